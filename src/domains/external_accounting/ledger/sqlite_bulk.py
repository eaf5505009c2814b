"""SQLite's bulk insert for a page's rows (part of the ledger repository: only it calls this).

SQLAlchemy's Core executemany builds a parameter dictionary per row and runs every value
through its processors one parameter at a time; on a page of 1,000 invoices that was more of a
SQLite page's time than SQLite's own work (profile in bench/README.md). Here the statement is
compiled once per shape, each column's values go through that column's own bind processor in
one `map` (so what is stored is exactly what the Core path stored), and the driver's
`executemany` steps one prepared statement over the tuples, inside the session's transaction.
Statements are built once, at import, by the repository: a plan is kept per statement."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from sqlalchemy import Insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from src.domains.external_accounting.ledger.rows import Row, as_records, columns

_Processor = Callable[[Any], Any] | None
# (SQL, the row field of each `?`, its bind processor), per statement and row type.
_Plan = tuple[str, list[int], list[_Processor]]
_plans: dict[tuple[Insert, type[Row]], _Plan] = {}


def _plan(
    statement: Insert, row_type: type[Row], dialect: Dialect, json_text: Collection[str]
) -> _Plan:
    if (plan := _plans.get((statement, row_type))) is not None:
        return plan
    names = columns(row_type)
    compiled = statement.compile(dialect=dialect, column_keys=names)
    order = list(compiled.positiontup or ())
    if missing := [name for name in order if name not in names]:
        # A column with a Python-side default would need a value per row that rows lack.
        raise ValueError(f"{row_type.__name__} has no value for {', '.join(missing)}")
    table = statement.table
    processors: list[_Processor] = [
        # JSON columns: the rows hold the document's text already (the Core path wrapped it in
        # JsonText so the serializer wrote it unchanged: the same text).
        None if name in json_text else _processor(table.c[name].type, dialect)
        for name in order
    ]
    plan = (compiled.string, [names.index(name) for name in order], processors)
    _plans[(statement, row_type)] = plan
    return plan


def _processor(column_type: Any, dialect: Dialect) -> _Processor:
    """What SQLAlchemy applies to this column's values on this database (the dialect's own
    type, under any TypeDecorator)."""
    processor: _Processor = column_type.dialect_impl(dialect).bind_processor(dialect)
    return processor


async def insert_rows(
    session: AsyncSession, statement: Insert, rows: Sequence[Row], json_text: Collection[str] = ()
) -> None:
    """Run `statement` (an INSERT into `rows`' table, with any ON CONFLICT clause, built once)
    for each row; `json_text`: the JSON columns, whose values are the document's text."""
    if not rows:
        return
    connection = await session.connection()
    sql, fields, processors = _plan(statement, type(rows[0]), connection.dialect, json_text)
    by_field = list(zip(*as_records(rows), strict=True))
    bound = [
        by_field[field] if processor is None else list(map(processor, by_field[field]))
        for field, processor in zip(fields, processors, strict=True)
    ]
    await connection.exec_driver_sql(sql, list(zip(*bound, strict=True)))
