"""SQLite's bulk insert binds exactly what SQLAlchemy's Core executemany bound for the same rows
(the statement and every parameter), so the faster path stores the same bytes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from src.core.database import create_engine
from src.domains.external_accounting.ledger import repository
from src.domains.external_accounting.ledger.rows import (
    ChangeRow,
    InvoiceRow,
    LineItemRow,
    Row,
    as_params,
)
from src.domains.external_accounting.ledger.sqlite_bulk import insert_rows


class _Captured(Exception):
    """Raised by the listener so nothing reaches the (table-less) database."""


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bulk.db'}")
    yield engine
    await engine.dispose()


async def _sent(engine: AsyncEngine, write: Any) -> tuple[str, list[tuple[Any, ...]]]:
    """The SQL and parameter tuples `write(session)` hands the driver."""
    sent: list[tuple[str, list[tuple[Any, ...]]]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, [tuple(p) for p in parameters]))
        raise _Captured

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with AsyncSession(engine) as session:
            with pytest.raises(_Captured):
                await write(session)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    assert len(sent) == 1
    return sent[0]


def _invoices() -> list[InvoiceRow]:
    tz = timezone(timedelta(hours=-5))
    common: dict[str, Any] = {
        "organization_id": uuid.uuid4(),
        "connection_id": uuid.uuid4(),
        "type": "ACCREC",
        "status": "AUTHORISED",
        "line_amount_types": "Exclusive",
        "raw": '{"InvoiceID": "x", "Total": 40.00}',
    }
    return [
        InvoiceRow(
            id=uuid.uuid4(),
            provider_id="a",
            number="INV-1",
            contact_id="c",
            contact_name="Ñandú & Co",
            reference=None,
            date=date(2026, 2, 28),
            due_date=None,
            fully_paid_on=date(2026, 3, 1),
            currency_code="NZD",
            currency_rate=Decimal("987654321.0123456789"),
            sub_total=Decimal("99999999999999.9999"),
            total_tax=Decimal("-0.0001"),
            total=Decimal("0"),
            total_discount=None,
            amount_due=Decimal("-12345678901234.5678"),
            amount_paid=Decimal("1E+2"),
            amount_credited=Decimal("0.00005"),  # rounds half up to the scale
            provider_updated_at=datetime(2026, 12, 1, 23, 30, 0, 123456, tzinfo=tz),
            synced_at=datetime(2026, 12, 2, tzinfo=UTC),
            version=3,
            **common,
        ),
        InvoiceRow(
            id=uuid.uuid4(),
            provider_id="b",
            number=None,
            contact_id=None,
            contact_name=None,
            reference="",
            date=None,
            due_date=None,
            fully_paid_on=None,
            currency_code=None,
            currency_rate=Decimal("0.0000000001"),
            sub_total=None,
            total_tax=None,
            total=None,
            total_discount=None,
            amount_due=None,
            amount_paid=None,
            amount_credited=None,
            provider_updated_at=datetime(2000, 1, 1, tzinfo=UTC),
            synced_at=datetime(2026, 12, 2, tzinfo=UTC),
            **common,
        ),
    ]


def _lines(invoice_id: uuid.UUID) -> list[LineItemRow]:
    return [
        LineItemRow(
            invoice_id=invoice_id,
            position=position,
            provider_id=None if position else "l0",
            description="Consulting",
            quantity=Decimal("0.0001"),
            unit_amount=Decimal("99999999999999.9999"),
            item_code=None,
            account_code="200",
            account_id=None,
            tax_type="OUTPUT2",
            tax_amount=None,
            line_amount=Decimal("-1.5"),
            discount_rate=Decimal("12.5"),
            tracking='[{"Name": "Region", "Option": "North"}]' if position else "[]",
        )
        for position in range(2)
    ]


def _changes(record_id: uuid.UUID) -> list[ChangeRow]:
    return [
        ChangeRow(
            organization_id=uuid.uuid4(),
            connection_id=uuid.uuid4(),
            record_type="invoice",
            record_id=record_id,
            provider_id="a",
            kind=kind,
            version=version,
            seen_at=datetime(2026, 12, 2, 1, 2, 3, tzinfo=UTC),
            run_id=run_id,
            changes='{"total": {"from": "1.00", "to": "2.00"}}',
        )
        for kind, version, run_id in (("created", 1, uuid.uuid4()), ("updated", 2, None))
    ]


CASES: list[tuple[str, Any, Any, set[str]]] = [
    ("invoices", repository._SQLITE_INVOICE_UPSERT, _invoices, {"raw"}),
    ("line items", repository._LINE_ITEM_INSERT, lambda: _lines(uuid.uuid4()), {"tracking"}),
    ("changes", repository._CHANGE_INSERT, lambda: _changes(uuid.uuid4()), {"changes"}),
]


@pytest.mark.parametrize(("what", "statement", "make_rows", "json_columns"), CASES)
async def test_the_bulk_path_binds_what_the_core_path_bound(
    sqlite_engine: AsyncEngine,
    what: str,
    statement: Any,
    make_rows: Any,
    json_columns: set[str],
) -> None:
    rows: list[Row] = make_rows()

    async def core(session: AsyncSession) -> None:
        await session.execute(statement, as_params(rows, json_columns))

    async def bulk(session: AsyncSession) -> None:
        await insert_rows(session, statement, rows, json_columns)

    core_sql, core_params = await _sent(sqlite_engine, core)
    bulk_sql, bulk_params = await _sent(sqlite_engine, bulk)
    assert bulk_sql == core_sql
    assert bulk_params == core_params
    assert len(bulk_params) == len(rows)


async def test_a_value_beyond_the_columns_precision_is_refused(sqlite_engine: AsyncEngine) -> None:
    """As on PostgreSQL (numeric(19, 4)), not silently stored as some other number."""
    too_big = _lines(uuid.uuid4())[0]
    rows = [
        LineItemRow(
            **{
                **{name: getattr(too_big, name) for name in LineItemRow.__struct_fields__},
                "line_amount": Decimal("1000000000000000"),  # 16 digits before the point
            }
        )
    ]
    async with AsyncSession(sqlite_engine) as session:
        with pytest.raises(ValueError, match="does not fit"):
            await insert_rows(session, repository._LINE_ITEM_INSERT, rows, {"tracking"})


async def test_a_column_the_rows_lack_is_refused_before_anything_is_sent(
    sqlite_engine: AsyncEngine,
) -> None:
    """`invoices.id` has a Python-side default: rows without an `id` field would need it made per
    row, which the bulk path does not do; it says so instead of sending NULLs."""
    without_id = msgspec.defstruct(
        "InvoiceRowWithoutId",
        [(name, Any) for name in InvoiceRow.__struct_fields__ if name != "id"],
        kw_only=True,
    )
    invoice = _invoices()[0]
    rows = [without_id(**{n: getattr(invoice, n) for n in without_id.__struct_fields__})]
    async with AsyncSession(sqlite_engine) as session:
        with pytest.raises(ValueError, match="has no value for id"):
            await insert_rows(session, repository._SQLITE_INVOICE_UPSERT, rows, {"raw"})  # type: ignore[arg-type]
