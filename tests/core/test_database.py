from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from src.core.database import UTCDateTime
from src.core.settings import Settings
from src.domains.organizations.models import Organization
from src.models_registry import metadata


async def test_migrations_match_the_models(engine: AsyncEngine) -> None:
    def diff(connection: object) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": False})  # type: ignore[arg-type]
        return list(compare_metadata(context, metadata))

    async with engine.connect() as connection:
        differences = await connection.run_sync(diff)
    assert differences == []


async def test_timestamps_round_trip_as_aware_utc(session: AsyncSession) -> None:
    created = datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=13)))
    session.add(Organization(name="Acme", created_at=created))
    await session.commit()
    stored = (await session.execute(select(Organization))).scalar_one()
    await session.refresh(stored)
    assert stored.created_at == created
    assert stored.created_at.tzinfo is not None
    assert stored.created_at.utcoffset() == timedelta(0)
    assert stored.created_at == datetime(2026, 2, 28, 23, 30, tzinfo=UTC)


async def test_naive_timestamps_are_refused(session: AsyncSession) -> None:
    session.add(Organization(name="Naive", created_at=datetime(2026, 1, 1)))
    with pytest.raises(Exception, match="naive datetime"):
        await session.commit()


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=13))),  # the day before, UTC
        datetime(2026, 12, 1, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2026, 6, 1, tzinfo=UTC),  # no microseconds: still six places
        datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_sqlite_timestamps_are_the_text_sqlalchemys_datetime_wrote(moment: datetime) -> None:
    """UTCDateTime's one-closure SQLite path writes what `process_bind_param` followed by
    SQLite's DATETIME processor wrote, so stored text, ordering and reads are unchanged."""
    dialect = sqlite.dialect()
    column = UTCDateTime()
    composed = sqlite.DATETIME().bind_processor(dialect)  # type: ignore[no-untyped-call]
    assert composed is not None
    expected = composed(column.process_bind_param(moment, dialect))
    assert column.bind_processor(dialect)(moment) == expected
    assert column.bind_processor(dialect)(None) is None
    with pytest.raises(ValueError, match="naive datetime"):
        column.bind_processor(dialect)(moment.replace(tzinfo=None))


def test_plain_urls_get_async_drivers() -> None:
    assert Settings(database_url="postgresql://u@h/db").database_url.startswith(
        "postgresql+asyncpg://"
    )
    assert Settings(database_url="sqlite:///x.db").database_url == "sqlite+aiosqlite:///x.db"


async def test_postgres_sessions_do_not_jit_compile(engine: AsyncEngine) -> None:
    """Compiling a plan cost 770 ms of the scheduler's 990 ms query once its cost estimate
    crossed jit_above_cost; the engine turns JIT off for its connections."""
    if engine.dialect.name != "postgresql":
        pytest.skip("JIT is PostgreSQL's")
    async with engine.connect() as connection:
        assert (await connection.execute(text("SHOW jit"))).scalar_one() == "off"
