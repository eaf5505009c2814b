"""What counts as a change: values compared as stored (money at its column's scale), versions
kept when nothing reported changed, lines reported old and new when any differs."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import msgspec

from src.domains.external_accounting.ledger.changes import (
    StoredInvoice,
    _invoice_values,
    _line_values,
    invoice_changes,
)
from src.domains.external_accounting.ledger.rows import InvoiceRow, LineItemRow

SEEN = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _invoice(**values: object) -> InvoiceRow:
    fields: dict[str, object] = {
        "id": uuid.uuid4(),
        "organization_id": uuid.uuid4(),
        "connection_id": uuid.uuid4(),
        "provider_id": "inv-1",
        "number": "INV-1",
        "type": "ACCREC",
        "status": "AUTHORISED",
        "contact_id": "c-1",
        "contact_name": "Ridgeway",
        "reference": None,
        "date": date(2026, 11, 2),
        "due_date": date(2026, 12, 2),
        "fully_paid_on": None,
        "line_amount_types": "Exclusive",
        "currency_code": "NZD",
        "currency_rate": Decimal("1.000000"),
        "sub_total": Decimal("1000.00"),
        "total_tax": Decimal("150.00"),
        "total": Decimal("1150.00"),
        "total_discount": None,
        "amount_due": Decimal("1150.00"),
        "amount_paid": Decimal("0.00"),
        "amount_credited": Decimal("0.00"),
        "provider_updated_at": SEEN,
        "raw": "{}",
        "synced_at": SEEN,
    }
    return InvoiceRow(**{**fields, **values})  # type: ignore[arg-type]


def _line(invoice: InvoiceRow, **values: object) -> LineItemRow:
    fields: dict[str, object] = {
        "invoice_id": invoice.id,
        "position": 0,
        "provider_id": None,
        "description": "Consulting",
        "quantity": Decimal("10"),
        "unit_amount": Decimal("100.00"),
        "item_code": None,
        "account_code": "200",
        "account_id": None,
        "tax_type": "OUTPUT2",
        "tax_amount": Decimal("150.00"),
        "line_amount": Decimal("1000.00"),
        "discount_rate": None,
        "tracking": "[]",
    }
    return LineItemRow(**{**fields, **values})  # type: ignore[arg-type]


def _as_stored(row: InvoiceRow, lines: list[LineItemRow], version: int) -> StoredInvoice:
    """What the database gives back: money at 4 places."""

    def scaled(value: object) -> object:
        return value.quantize(Decimal("0.0001")) if isinstance(value, Decimal) else value

    return StoredInvoice(
        version,
        tuple(scaled(v) for v in _invoice_values(row)),
        [tuple(scaled(v) for v in _line_values(line)) for line in lines],
    )


def test_a_rewrite_with_the_same_values_keeps_its_version_and_records_nothing() -> None:
    row = _invoice()
    lines = [_line(row, unit_amount=Decimal("33.33333"))]  # more places than the column
    stored = _as_stored(row, [_line(row, unit_amount=Decimal("33.3333"))], version=4)
    written, recorded = invoice_changes([row], lines, {row.id: stored}, run_id=None, seen_at=SEEN)
    assert recorded == []
    assert [w.version for w in written] == [4]


def test_a_change_reports_old_and_new_exactly_and_bumps_the_version() -> None:
    row = _invoice()
    stored = _as_stored(row, [_line(row)], version=2)
    paid = msgspec.structs.replace(
        row, amount_due=Decimal("0.01"), amount_paid=Decimal("1149.99"), status="AUTHORISED"
    )
    edited = [_line(row), _line(row, position=1, description="Travel")]
    written, (change,) = invoice_changes(
        [paid], edited, {row.id: stored}, run_id=None, seen_at=SEEN
    )
    assert written[0].version == change.version == 3
    assert change.kind == "updated"
    changes = json.loads(change.changes)
    assert changes["amount_due"] == {"old": "1150.0000", "new": "0.01"}
    assert changes["amount_paid"] == {"old": "0.0000", "new": "1149.99"}
    assert set(changes) == {"amount_due", "amount_paid", "lines"}
    assert len(changes["lines"]["old"]) == 1
    assert [line["description"] for line in changes["lines"]["new"]] == ["Consulting", "Travel"]


def test_creation_is_version_one_with_every_new_value() -> None:
    row = _invoice()
    _, (change,) = invoice_changes([row], [_line(row)], {}, run_id=None, seen_at=SEEN)
    changes = json.loads(change.changes)
    assert (change.kind, change.version) == ("created", 1)
    assert changes["total"] == {"old": None, "new": "1150.00"}
    assert changes["date"] == {"old": None, "new": "2026-11-02"}
    assert changes["lines"]["new"][0]["line_amount"] == "1000.00"
