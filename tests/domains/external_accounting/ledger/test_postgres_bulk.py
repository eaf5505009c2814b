"""PostgreSQL's bulk path sends money as its text through the stage tables: the numbers stored
are exactly those a binary COPY of the same Decimals stored (rounding to the scale and refusing
what exceeds the precision included), and the other columns arrive unchanged."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, cast

import asyncpg
import pytest
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from src.domains.external_accounting.ledger import repository
from src.domains.external_accounting.ledger.models import Invoice, InvoiceLineItem
from src.domains.external_accounting.ledger.postgres_bulk import staged_records
from src.domains.external_accounting.ledger.repository import copy_to_stage
from src.domains.external_accounting.ledger.rows import InvoiceRow, LineItemRow, Row, columns
from tests.domains.external_accounting.ledger.test_sqlite_bulk import _invoices, _lines

# Per table: the stage, the model, the row type, the rows, and values the first row must hold
# as stored (rounded half up to the scale; an exponent read as the number it is).
CASES: list[tuple[Any, Any, Any, Any, dict[str, Decimal]]] = [
    (
        repository._INVOICE_STAGE,
        Invoice,
        InvoiceRow,
        _invoices,
        {
            "sub_total": Decimal("99999999999999.9999"),
            "amount_paid": Decimal("100.0000"),
            "amount_credited": Decimal("0.0001"),
            "currency_rate": Decimal("987654321.0123456789"),
        },
    ),
    (
        repository._LINE_ITEM_STAGE,
        InvoiceLineItem,
        LineItemRow,
        lambda: _lines(uuid.uuid4()),
        {"quantity": Decimal("0.0001"), "line_amount": Decimal("-1.5000")},
    ),
]


def _postgres_only(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the COPY path is PostgreSQL's")


@pytest.mark.parametrize(("stage", "model", "row_type", "make_rows", "first"), CASES)
async def test_the_stage_stores_the_numbers_a_binary_copy_stored(
    engine: AsyncEngine,
    stage: Any,
    model: Any,
    row_type: type[Row],
    make_rows: Any,
    first: dict[str, Decimal],
) -> None:
    _postgres_only(engine)
    rows: list[Row] = make_rows()
    table = cast(Table, model.__table__)
    names = columns(row_type)
    listed = ", ".join(f'"{n}"' for n in names)
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        async with driver.transaction():
            # The binary path: the same Decimals COPY'd into a table of the real column types.
            await driver.execute(
                f"CREATE TEMP TABLE binary_copy (LIKE {table.name}) ON COMMIT DROP"
            )
            await driver.copy_records_to_table(
                "binary_copy",
                records=[tuple(getattr(r, f) for f in r.__struct_fields__) for r in rows],
                columns=names,
            )
            await driver.execute(f"CREATE TEMP TABLE via_text (LIKE {table.name}) ON COMMIT DROP")
            await copy_to_stage(driver, stage, rows)
            await driver.execute(
                f"INSERT INTO via_text ({listed}) SELECT {stage.select} FROM {stage.name}"
            )
            order = "ORDER BY provider_id NULLS LAST"
            expected = await driver.fetch(f"SELECT {listed} FROM binary_copy {order}")
            stored = await driver.fetch(f"SELECT {listed} FROM via_text {order}")
    assert [tuple(r) for r in stored] == [tuple(r) for r in expected]
    assert len(stored) == len(rows)
    for name, value in first.items():
        assert stored[0][name] == value
        assert str(stored[0][name]) == str(value)  # the scale too


async def test_a_value_beyond_the_precision_is_refused_as_before(engine: AsyncEngine) -> None:
    """numeric(19, 4): 16 digits before the point is an error, not some other number stored."""
    _postgres_only(engine)
    line = _lines(uuid.uuid4())[0]
    too_big = LineItemRow(
        **{
            **{name: getattr(line, name) for name in LineItemRow.__struct_fields__},
            "line_amount": Decimal("1000000000000000"),
        }
    )
    stage = repository._LINE_ITEM_STAGE
    listed = ", ".join(f'"{n}"' for n in columns(LineItemRow))
    async with engine.connect() as connection:
        driver: Any = (await connection.get_raw_connection()).driver_connection

        async def store() -> None:
            async with driver.transaction():
                await driver.execute(
                    "CREATE TEMP TABLE via_text (LIKE invoice_line_items) ON COMMIT DROP"
                )
                await copy_to_stage(driver, stage, [too_big])
                await driver.execute(
                    f"INSERT INTO via_text ({listed}) SELECT {stage.select} FROM {stage.name}"
                )

        with pytest.raises(asyncpg.NumericValueOutOfRangeError):
            await store()


def test_money_goes_as_its_exact_text() -> None:
    (row,) = _invoices()[:1]
    record = staged_records(repository._INVOICE_STAGE, [row])[0]
    by_name = dict(zip(columns(InvoiceRow), record, strict=True))
    assert by_name["sub_total"] == "99999999999999.9999"
    assert by_name["amount_paid"] == "1E+2"
    assert by_name["total_discount"] is None
    assert by_name["id"] == row.id  # everything else as it was
