"""money exact on SQLite (issue 10, money)

SQLite's NUMERIC affinity stores a number-looking value as a float (15 significant digits):
`99999999999999.9999` came back as `100000000000000`. The money and rate columns become TEXT
holding the exact fixed-point digits (see `ExactDecimal`). Stored values are rewritten in that
form; those too large for a float to have kept every digit are recovered from the invoice's
verbatim `raw` document, which has Xero's exact numbers. PostgreSQL's `numeric` is exact: no-op.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 10:20:00
"""

import json
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# column -> (scale, Xero's field in the raw document)
INVOICE_COLUMNS = {
    "currency_rate": (10, "CurrencyRate"),
    "sub_total": (4, "SubTotal"),
    "total_tax": (4, "TotalTax"),
    "total": (4, "Total"),
    "total_discount": (4, "TotalDiscount"),
    "amount_due": (4, "AmountDue"),
    "amount_paid": (4, "AmountPaid"),
    "amount_credited": (4, "AmountCredited"),
}
LINE_COLUMNS = {
    "quantity": (4, "Quantity"),
    "unit_amount": (4, "UnitAmount"),
    "tax_amount": (4, "TaxAmount"),
    "line_amount": (4, "LineAmount"),
    "discount_rate": (4, "DiscountRate"),
}
PRECISION = 19
# A float keeps 15 significant digits: below 10 ** (15 - scale) every digit survived it.
FLOAT_DIGITS = 15


def _fixed(value: Any, scale: int) -> str:
    exact = Decimal(value).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
    return format(exact if exact else abs(exact), "f")


def _retype(table: str, name: str, declared: str, value: str) -> None:
    """Give a column a new declared type with SQLite's own ALTER TABLE (add, copy, drop,
    rename), not a batch rebuild: dropping the old `invoices` table would cascade-delete every
    line item (foreign keys are on, and cannot be turned off inside the transaction)."""
    op.execute(f"ALTER TABLE {table} ADD COLUMN {name}_retyped {declared}")
    op.execute(f"UPDATE {table} SET {name}_retyped = {value} WHERE {name} IS NOT NULL")
    op.execute(f"ALTER TABLE {table} DROP COLUMN {name}")
    op.execute(f"ALTER TABLE {table} RENAME COLUMN {name}_retyped TO {name}")


def _to_text(table: str, columns: dict[str, tuple[int, str]]) -> None:
    for name, (scale, _field) in columns.items():
        _retype(table, name, "TEXT", f"printf('%.{scale}f', {name})")


def _to_numeric(table: str, columns: dict[str, tuple[int, str]]) -> None:
    for name, (scale, _field) in columns.items():
        _retype(table, name, f"NUMERIC({PRECISION}, {scale})", name)


def _lossy(columns: dict[str, tuple[int, str]], alias: str = "") -> str:
    return " OR ".join(
        f"ABS(CAST({alias}{name} AS REAL)) >= 1e{FLOAT_DIGITS - scale}"
        for name, (scale, _field) in columns.items()
    )


def _exact(document: dict[str, Any], columns: dict[str, tuple[int, str]]) -> dict[str, str]:
    return {
        name: _fixed(document[field], scale)
        for name, (scale, field) in columns.items()
        if isinstance(document.get(field), (int, Decimal))
    }


def _recover_from_raw() -> None:
    bind = op.get_bind()
    for row_id, raw in bind.execute(
        sa.text(f"SELECT id, raw FROM invoices WHERE {_lossy(INVOICE_COLUMNS)}")
    ).all():
        values = _exact(json.loads(raw, parse_float=Decimal), INVOICE_COLUMNS)
        if values:
            assignments = ", ".join(f"{name} = :{name}" for name in values)
            bind.execute(
                sa.text(f"UPDATE invoices SET {assignments} WHERE id = :row_id"),
                {**values, "row_id": row_id},
            )
    lines = bind.execute(
        sa.text(
            "SELECT li.invoice_id, li.position, i.raw FROM invoice_line_items li "
            f"JOIN invoices i ON i.id = li.invoice_id WHERE {_lossy(LINE_COLUMNS, 'li.')}"
        )
    ).all()
    for invoice_id, position, raw in lines:
        items = json.loads(raw, parse_float=Decimal).get("LineItems") or []
        if position >= len(items):
            continue
        values = _exact(items[position], LINE_COLUMNS)
        if values:
            assignments = ", ".join(f"{name} = :{name}" for name in values)
            bind.execute(
                sa.text(
                    f"UPDATE invoice_line_items SET {assignments} "
                    "WHERE invoice_id = :invoice_id AND position = :position"
                ),
                {**values, "invoice_id": invoice_id, "position": position},
            )


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return  # numeric(19, 4) is exact on PostgreSQL
    _to_text("invoices", INVOICE_COLUMNS)
    _to_text("invoice_line_items", LINE_COLUMNS)
    _recover_from_raw()


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # Back to NUMERIC affinity: SQLite turns the text into floats again (digits beyond 15 lost).
    _to_numeric("invoice_line_items", LINE_COLUMNS)
    _to_numeric("invoices", INVOICE_COLUMNS)
