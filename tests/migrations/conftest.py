"""What the migration tests share: a scratch database of the kind the suite runs on."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from src.core.database import create_engine
from src.core.settings import Settings


@pytest.fixture
def scratch_database(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database of the kind the tests run on, for this test alone."""
    url = Settings(database_url=os.environ.get("TEST_DATABASE_URL", "sqlite://")).database_url
    if url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    server = make_url(url)
    name = f"{server.database}_{request.module.__name__.rsplit('.', 1)[-1]}"[:63]

    async def admin(statement: str) -> None:
        engine = create_engine(url)
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(sa.text(statement))
        await engine.dispose()

    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}"'))
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
