"""Running an operator command's database work: one committed transaction, typed errors as a
clean exit instead of a traceback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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
