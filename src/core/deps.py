"""FastAPI dependency aliases shared by every domain's routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.database import session_scope
from src.core.settings import Settings


def get_app_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


def get_session_factory(request: Request) -> async_sessionmaker[AsyncSession]:
    """The app's session factory (for work that commits on its own schedule, such as a sync)."""
    factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    return factory


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session per request that commits on success and rolls back on error."""
    async for session in session_scope(request.app.state.session_factory):
        yield session


def get_http_client(request: Request) -> httpx.AsyncClient:
    """The process's shared outbound HTTP client."""
    client: httpx.AsyncClient = request.app.state.http_client
    return client


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
SessionFactoryDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_session_factory)]
HttpClientDep = Annotated[httpx.AsyncClient, Depends(get_http_client)]
