"""Alembic environment: runs migrations over the app's async engine."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from src.core.database import UTCDateTime, create_engine
from src.core.settings import get_settings
from src.models_registry import metadata

config = context.config


def _database_url() -> str:
    return config.attributes.get("database_url") or get_settings().database_url


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    # UTCDateTime is a Python-side wrapper; the column itself is a plain timestamptz.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_item=_render_item,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _broken_foreign_keys(connection: AsyncConnection) -> set[tuple[Any, ...]]:
    """SQLite's rows whose foreign keys refer to nothing (table, rowid, parent, key index)."""
    return {tuple(row) for row in await connection.exec_driver_sql("PRAGMA foreign_key_check")}


async def _run_async() -> None:
    engine = create_engine(_database_url())
    async with engine.connect() as connection:
        on_sqlite = connection.dialect.name == "sqlite"
        if on_sqlite:
            # SQLite alters a table by copying it (batch mode) and dropping the original: with
            # foreign keys on, that drop deletes the rows referring to it (ON DELETE CASCADE).
            # SQLite's procedure for such changes turns them off (before any transaction) and
            # checks the keys before committing; the engine is disposed after, pragma and all.
            await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            broken_before = await _broken_foreign_keys(connection)
        await connection.run_sync(_run)
        if on_sqlite:
            broken = await _broken_foreign_keys(connection) - broken_before
            if broken:
                await connection.rollback()
                raise RuntimeError(f"the migration broke foreign keys: {sorted(broken)[:5]}")
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_database_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_async())
