"""PostgreSQL's stage tables for a page's rows (part of the ledger repository: only it uses
this, and it runs the statements).

A page goes by binary `COPY` into a session-private stage table and from there into its table
with one set-based statement. The stages' money columns are `text`: asyncpg's binary encoding
of a `Decimal` (digit groups built in Python objects) was the largest single cost of a page in
this process, ~35 ms of ~180 for 1,000 invoices and 2,400 lines, and writing each value's own
exact text costs ~4 ms. PostgreSQL's numeric input parses that text to the same number (no
float on the way) as the statement casts it back. That and the line items' second statement
cost PostgreSQL ~1.5 s more CPU over a 100,000-invoice sync (in two of three A/B runs) where
this process saved ~3 s (bench/README.md, issue 14)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import Table

from src.core.database import ExactDecimal
from src.domains.external_accounting.ledger.rows import Row, columns


@dataclass(frozen=True)
class Stage:
    """A stage table for `row_type`'s rows of `table`: its name, the statement that creates it
    once per database session, and its columns in row order as a `SELECT` list that casts the
    money back."""

    name: str
    create: str
    select: str
    money_fields: tuple[int, ...]


def stage_for(table: Table, row_type: type[Row]) -> Stage:
    """The stage of `table` for `row_type`'s columns: `LIKE` the table (its compression too:
    `raw` is compressed once, with lz4, and moves on compressed), emptied at each commit, its
    money columns `text`. A DO block because `CREATE ... IF NOT EXISTS` cannot also alter, and
    a temporary table created in a transaction that rolls back is gone again: whether it exists
    is asked each time."""
    name = f"ledgersync_{table.name}_stage"
    names = columns(row_type)
    money = [n for n in names if isinstance(table.c[n].type, ExactDecimal)]
    altered = ", ".join(f'ALTER COLUMN "{n}" TYPE text' for n in money)
    alter = f" ALTER TABLE {name} {altered};" if money else ""
    create = (
        f"DO $$ BEGIN IF to_regclass('pg_temp.{name}') IS NULL THEN "
        f"CREATE TEMP TABLE {name} (LIKE {table.name} INCLUDING DEFAULTS INCLUDING COMPRESSION)"
        f" ON COMMIT DELETE ROWS;{alter} END IF; END $$; DELETE FROM {name}"
    )
    select = ", ".join(f'"{n}"::numeric' if n in money else f'"{n}"' for n in names)
    return Stage(name, create, select, tuple(names.index(n) for n in money))


def staged_records(stage: Stage, rows: Sequence[Row]) -> list[tuple[Any, ...]]:
    """Rows as COPY records for `stage`: every money value as its exact text."""
    by_field = list(zip(*map(msgspec.structs.astuple, rows), strict=True))
    for field in stage.money_fields:
        # `str` of a Decimal is exact (with an exponent where it has one: `1E+2` reads back).
        by_field[field] = tuple(None if v is None else str(v) for v in by_field[field])
    return list(zip(*by_field, strict=True))
