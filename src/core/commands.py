"""Running an operator command's database work: one committed transaction, typed errors as a
clean exit instead of a traceback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from src.core.database import create_engine, create_session_factory
from src.core.errors import LedgersyncError
from src.core.settings import get_settings

T = TypeVar("T")


def run_in_transaction(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction; typed errors become a clean exit."""

    async def main() -> T:
        engine = create_engine(get_settings().database_url)
        try:
            async with create_session_factory(engine)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except LedgersyncError as error:
        typer.echo(f"error: {error.detail}", err=True)
        raise typer.Exit(2) from error


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def _json_value(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def print_rows(
    rows: Sequence[Mapping[str, object]], columns: Sequence[str], *, json_lines: bool
) -> None:
    """An operator's list: plain aligned columns under a header, or one JSON object per line
    (for scripts: `jq`, `grep`) with `--json`."""
    if json_lines:
        for row in rows:
            typer.echo(json.dumps({column: _json_value(row[column]) for column in columns}))
        return
    table = [list(columns)] + [[_text(row[column]) for column in columns] for row in rows]
    widths = [max(len(line[index]) for line in table) for index in range(len(columns))]
    for line in table:
        typer.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
