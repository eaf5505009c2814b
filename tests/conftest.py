"""Shared fixtures: a real database (SQLite file by default, PostgreSQL when TEST_DATABASE_URL
says so), migrated with Alembic, and the app over ASGI."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from src.core.database import create_engine, create_session_factory
from src.core.jobs import JOBS_SCHEMA
from src.core.migrations import upgrade_database
from src.core.settings import Settings
from src.xero_sandbox.server import RunningSandbox
from tests.fixtures import (
    SANDBOX_CONFIG,
    app_client,
    empty_tables,
    reset_sandbox,
    running_app,
    sandbox_settings,
)


def _reset_postgres(url: str) -> None:
    async def reset() -> None:
        engine = create_engine(url)
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
            # The job queue's schema (migration 0010), which the upgrade below creates again.
            await connection.execute(text(f"DROP SCHEMA IF EXISTS {JOBS_SCHEMA} CASCADE"))
        await engine.dispose()

    asyncio.run(reset())


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A freshly migrated database for this test session."""
    url = Settings(database_url=os.environ.get("TEST_DATABASE_URL", "sqlite://")).database_url
    if url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    else:
        _reset_postgres(url)
    upgrade_database(url)
    return url


@pytest.fixture(scope="session")
def sandbox() -> Iterator[RunningSandbox]:
    """One Xero sandbox, over real HTTP in a background thread, for the whole test session."""
    with RunningSandbox(SANDBOX_CONFIG) as running:
        yield running


@pytest.fixture
def fresh_sandbox(sandbox: RunningSandbox) -> RunningSandbox:
    """The session's sandbox, reset to its seeded data with no tokens, faults or counters."""
    reset_sandbox(sandbox)
    return sandbox


@pytest.fixture(scope="session")
def settings(database_url: str, sandbox: RunningSandbox) -> Settings:
    """Settings for the app under test, pointed at the session's Xero sandbox."""
    return sandbox_settings(database_url, sandbox.base_url)


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The test session's engine."""
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """A session factory over emptied tables."""
    await empty_tables(engine)
    return create_session_factory(engine)


@pytest.fixture
async def session(
    session_factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session for arranging and checking data."""
    async with session_factory() as session:
        yield session


@pytest.fixture
async def app(settings: Settings, session_factory: object) -> AsyncIterator[FastAPI]:
    """The service, with its lifespan running, over emptied tables."""
    async with running_app(settings) as application:
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client speaking to the app in-process."""
    async with app_client(app) as client:
        yield client


def pytest_report_header() -> str:
    """Say which database the run uses, so a log shows both runs happened."""
    url = os.environ.get("TEST_DATABASE_URL", "sqlite (temporary file)")
    return f"database: {url.split('@')[-1]}"
