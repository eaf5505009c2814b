"""What a write changes: the stored and the new version of each record compared field by field,
and the `ledger_changes` rows recording it. No SQL here: the repository reads the stored values in
the write's transaction, calls these, and writes what they return in the same transaction.

Values are compared as values: money as Decimals (so Xero's "1150.00" equals the stored
"1150.0000", and a figure with more places than its column equals what the column rounded it
to), dates and instants as such. A change's JSON keeps each value exact: money as decimal text
(Xero's digits for a value just received, the stored scale for one read back), dates and
instants as ISO 8601. This runs for every invoice a sync writes, hence tuples and msgspec (C)
rather than per-field Python where it can."""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

import msgspec

from src.domains.external_accounting.ledger.models import ChangeKind, RecordType
from src.domains.external_accounting.ledger.rows import (
    AccountRow,
    ChangeRow,
    InvoiceRow,
    LineItemRow,
    Row,
)

Values = tuple[Any, ...]

_MONEY = Decimal(1).scaleb(-4)
_RATE = Decimal(1).scaleb(-10)

# What a change reports, in order, and the scale of each decimal field (its column's). The
# names are the columns' (`class_` is the account's `class`).
INVOICE_FIELDS: dict[str, Decimal | None] = {
    "status": None,
    "number": None,
    "reference": None,
    "contact_id": None,
    "contact_name": None,
    "currency_code": None,
    "currency_rate": _RATE,
    "date": None,
    "due_date": None,
    "fully_paid_on": None,
    "sub_total": _MONEY,
    "total_tax": _MONEY,
    "total": _MONEY,
    "total_discount": _MONEY,
    "amount_due": _MONEY,
    "amount_paid": _MONEY,
    "amount_credited": _MONEY,
    "provider_updated_at": None,
}
LINE_FIELDS: dict[str, Decimal | None] = {
    "description": None,
    "quantity": _MONEY,
    "unit_amount": _MONEY,
    "item_code": None,
    "account_code": None,
    "tax_type": None,
    "tax_amount": _MONEY,
    "line_amount": _MONEY,
}
ACCOUNT_FIELDS: dict[str, Decimal | None] = dict.fromkeys(
    (
        "code",
        "name",
        "type",
        "class_",
        "status",
        "description",
        "bank_account_number",
        "bank_account_type",
        "currency_code",
        "tax_type",
        "reporting_code",
        "reporting_code_name",
        "system_account",
        "enable_payments_to_account",
        "provider_updated_at",
    )
)
_SHOWN_AS = {"class_": "class"}


def _picker(row_type: type[Row], fields: Mapping[str, Decimal | None]) -> Callable[[Row], Values]:
    """A row's values of `fields`, in order (C-speed: astuple, then itemgetter)."""
    names = list(row_type.__struct_fields__)
    pick = operator.itemgetter(*(names.index(name) for name in fields))
    astuple = msgspec.structs.astuple
    return lambda row: pick(astuple(row))


_invoice_values = _picker(InvoiceRow, INVOICE_FIELDS)
_line_values = _picker(LineItemRow, LINE_FIELDS)
_account_values = _picker(AccountRow, ACCOUNT_FIELDS)
_INVOICE_SCALES = tuple(INVOICE_FIELDS.values())
_LINE_SCALES = tuple(LINE_FIELDS.values())
_ACCOUNT_SCALES = tuple(ACCOUNT_FIELDS.values())
_INVOICE_NAMES = tuple(_SHOWN_AS.get(n, n) for n in INVOICE_FIELDS)
_LINE_NAMES = tuple(LINE_FIELDS)
_ACCOUNT_NAMES = tuple(_SHOWN_AS.get(n, n) for n in ACCOUNT_FIELDS)


def _same(old: Any, new: Any, scale: Decimal | None) -> bool:
    """Equal as stored: a decimal is compared after rounding to its column's scale."""
    if old == new:
        return True
    if scale is None or old is None or new is None:
        return False
    return bool(old == new.quantize(scale, ROUND_HALF_UP))


def _differences(
    old: Values, new: Values, names: Sequence[str], scales: Sequence[Decimal | None]
) -> dict[str, Any]:
    if old == new:
        return {}
    return {
        name: {"old": before, "new": after}
        for name, before, after, scale in zip(names, old, new, scales, strict=True)
        if not _same(before, after, scale)
    }


def _lines_differ(old: list[Values], new: list[Values]) -> bool:
    if old == new:
        return False
    if len(old) != len(new):
        return True
    return any(
        not _same(before, after, scale)
        for old_line, new_line in zip(old, new, strict=True)
        for before, after, scale in zip(old_line, new_line, _LINE_SCALES, strict=True)
    )


def _created(new: Values, names: Sequence[str]) -> dict[str, Any]:
    return {name: {"old": None, "new": value} for name, value in zip(names, new, strict=True)}


# A line as a change shows it: a Struct, built from the values in C, encoded as an object.
_LineOut = msgspec.defstruct("LineOut", [(name, Any) for name in _LINE_NAMES])


def _line_dicts(lines: list[Values]) -> list[Any]:
    return [_LineOut(*line) for line in lines]


_encode = msgspec.json.Encoder(decimal_format="string").encode


class StoredInvoice(NamedTuple):
    """An invoice as stored before the write: its version, and its values of `INVOICE_FIELDS`
    and of each line's `LINE_FIELDS`, lines in order."""

    version: int
    values: Values
    lines: list[Values]


class StoredAccount(NamedTuple):
    """An account as stored before the write: our id, its version, its `ACCOUNT_FIELDS`."""

    id: uuid.UUID
    version: int
    values: Values


def _change_row(
    row: InvoiceRow | AccountRow,
    *,
    record_type: RecordType,
    record_id: uuid.UUID,
    kind: ChangeKind,
    version: int,
    changes: dict[str, Any],
    run_id: uuid.UUID | None,
    seen_at: datetime,
) -> ChangeRow:
    return ChangeRow(
        organization_id=row.organization_id,
        connection_id=row.connection_id,
        record_type=record_type.value,
        record_id=record_id,
        provider_id=row.provider_id,
        kind=kind.value,
        version=version,
        seen_at=seen_at,
        run_id=run_id,
        changes=_encode(changes).decode(),
    )


def invoice_changes(
    rows: Sequence[InvoiceRow],
    lines: Sequence[LineItemRow],
    stored: Mapping[uuid.UUID, StoredInvoice],
    *,
    run_id: uuid.UUID | None,
    seen_at: datetime,
) -> tuple[list[InvoiceRow], list[ChangeRow]]:
    """The invoice rows to write, each at its version, and a change row for each one created or
    whose reported content differs from `stored` (by our id). A rewrite that changes nothing
    reported (a reconciliation confirming what is stored) keeps its version and records nothing."""
    # Keyed by the UUIDs' ints: UUID.__hash__ is Python code, and this runs per line.
    new_lines: dict[int, list[Values]] = {}
    for line in lines:
        new_lines.setdefault(line.invoice_id.int, []).append(_line_values(line))
    written: list[InvoiceRow] = []
    recorded: list[ChangeRow] = []
    for row in rows:
        new = _invoice_values(row)
        its_lines = new_lines.get(row.id.int, [])
        before = stored.get(row.id)
        if before is None:
            kind, version = ChangeKind.CREATED, 1
            changes = _created(new, _INVOICE_NAMES)
            changes["lines"] = {"old": None, "new": _line_dicts(its_lines)}
        else:
            changes = _differences(before.values, new, _INVOICE_NAMES, _INVOICE_SCALES)
            if _lines_differ(before.lines, its_lines):
                changes["lines"] = {
                    "old": _line_dicts(before.lines),
                    "new": _line_dicts(its_lines),
                }
            if not changes:
                written.append(msgspec.structs.replace(row, version=before.version))
                continue
            kind, version = ChangeKind.UPDATED, before.version + 1
        if row.version != version:
            row = msgspec.structs.replace(row, version=version)
        written.append(row)
        recorded.append(
            _change_row(
                row,
                record_type=RecordType.INVOICE,
                record_id=row.id,
                kind=kind,
                version=version,
                changes=changes,
                run_id=run_id,
                seen_at=seen_at,
            )
        )
    return written, recorded


class AccountWrites(NamedTuple):
    """What an accounts write does: the rows to write (new or changed only), their change rows,
    and how many of the given accounts were new, changed or already stored as they are."""

    rows: list[AccountRow]
    changes: list[ChangeRow]
    created: int
    updated: int
    unchanged: int


def account_changes(
    rows: Sequence[AccountRow],
    stored: Mapping[str, StoredAccount],
    *,
    run_id: uuid.UUID | None,
    seen_at: datetime,
) -> AccountWrites:
    """Compare each account with what is stored (by provider id): only new and changed ones are
    written and recorded. An account whose status becomes DELETED is a `deleted` change."""
    written: list[AccountRow] = []
    recorded: list[ChangeRow] = []
    created = updated = 0
    for row in rows:
        new = _account_values(row)
        before = stored.get(row.provider_id)
        if before is None:
            kind, version, record_id = ChangeKind.CREATED, 1, row.id
            changes = _created(new, _ACCOUNT_NAMES)
            created += 1
        else:
            changes = _differences(before.values, new, _ACCOUNT_NAMES, _ACCOUNT_SCALES)
            if not changes:
                continue
            deleted = row.status == "DELETED" and "status" in changes
            kind = ChangeKind.DELETED if deleted else ChangeKind.UPDATED
            version, record_id = before.version + 1, before.id
            updated += 1
        written.append(msgspec.structs.replace(row, id=record_id, version=version))
        recorded.append(
            _change_row(
                row,
                record_type=RecordType.ACCOUNT,
                record_id=record_id,
                kind=kind,
                version=version,
                changes=changes,
                run_id=run_id,
                seen_at=seen_at,
            )
        )
    return AccountWrites(written, recorded, created, updated, len(rows) - created - updated)
