"""Migration 0007 on SQLite: money columns become exact text, the figures a float rounded are
recovered from the invoice's raw document, and no row is lost on the way up or down."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command

from src.core.migrations import alembic_config, upgrade_database

pytestmark = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "sqlite://").startswith("sqlite"),
    reason="on PostgreSQL numeric is exact and the migration is a no-op",
)

INVOICE = uuid.uuid4()
RAW = {
    "InvoiceID": "xero-1",
    "Total": Decimal("99999999999999.9999"),
    "SubTotal": Decimal("99999999999999.9999"),
    "TotalTax": 0,
    "CurrencyRate": Decimal("987654321.0123456789"),
    "LineItems": [{"Quantity": 1, "UnitAmount": Decimal("99999999999999.9999"), "LineAmount": 5}],
}


def _seed(path: Path) -> None:
    """Rows as the old schema stored them: floats in NUMERIC columns."""
    db = sqlite3.connect(path)  # foreign keys off: only the ledger tables matter here
    raw = json.dumps(RAW, default=lambda d: float(d) if d != d.to_integral() else int(d))
    raw = raw.replace("100000000000000.0", "99999999999999.9999")  # Xero's exact text
    raw = raw.replace("987654321.0123457", "987654321.0123456789")
    db.execute(
        "INSERT INTO invoices (id, organization_id, connection_id, provider_id, type, status,"
        " currency_rate, sub_total, total_tax, total, amount_due, provider_updated_at, raw,"
        " synced_at) VALUES (?, ?, ?, 'xero-1', 'ACCREC', 'PAID', ?, ?, 0, ?, 12.5,"
        " '2026-01-01 00:00:00', ?, '2026-01-01 00:00:00')",
        (
            INVOICE.hex,
            uuid.uuid4().hex,
            uuid.uuid4().hex,
            987654321.0123456789,
            99999999999999.9999,
            99999999999999.9999,
            raw,
        ),
    )
    db.execute(
        "INSERT INTO invoice_line_items (invoice_id, position, quantity, unit_amount,"
        " line_amount, tax_amount, tracking) VALUES (?, 0, 1, ?, 0.1, NULL, '[]')",
        (INVOICE.hex, 99999999999999.9999),
    )
    db.commit()
    db.close()


def _stored(path: Path, table: str, columns: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(f"SELECT {columns} FROM {table}").fetchall()
    finally:
        db.close()


def test_money_columns_become_exact_text(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade_database(url, "0006")
    _seed(path)
    assert _stored(path, "invoices", "total") == [(1e14,)]  # what the float made of it

    upgrade_database(url, "0007")
    assert _stored(
        path, "invoices", "total, sub_total, total_tax, amount_due, currency_rate, total_discount"
    ) == [
        (
            "99999999999999.9999",  # recovered from the raw document
            "99999999999999.9999",
            "0.0000",
            "12.5000",  # small figures kept their value, in the column's scale
            "987654321.0123456789",
            None,
        )
    ]
    assert _stored(
        path, "invoice_line_items", "position, quantity, unit_amount, line_amount, tax_amount"
    ) == [
        # A row the float may have rounded takes every figure from Xero's document (its line
        # amount says 5); figures the document lacks keep their stored value (amount_due above).
        (0, "1.0000", "99999999999999.9999", "5.0000", None)
    ]

    command.downgrade(alembic_config(url), "0006")
    assert _stored(path, "invoice_line_items", "count(*)") == [(1,)]
    # Numbers again under NUMERIC affinity (1e14 fits an integer).
    assert _stored(path, "invoices", "typeof(total), typeof(amount_due)") == [("integer", "real")]
