"""FastAPI dependency aliases shared by every domain's routes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

import httpx
from fastapi import Depends, Request
from pydantic import AfterValidator, AwareDatetime
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.database import session_scope
from src.core.errors import ValidationFailed
from src.core.settings import Settings

# No parameter of ours means a control character, and PostgreSQL refuses NUL in text outright.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def refuse_control_characters(request: Request) -> None:
    """Refuse (422) a query or path parameter holding a control character, for every route at
    once, before any handler passes it to the database."""
    values = [*request.query_params.multi_items(), *request.path_params.items()]
    for name, value in values:
        if _CONTROL.search(name) or (isinstance(value, str) and _CONTROL.search(value)):
            raise ValidationFailed(
                f"The parameter {_CONTROL.sub('?', name)!r} contains a control character.",
                parameter=_CONTROL.sub("?", name),
            )


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+14:00 is a valid ISO timestamp whose UTC instant is in year 0.
        raise ValueError("the timestamp is out of range once converted to UTC") from None


# A timestamp parameter: a timezone is required (naive times are ambiguous), and the value is
# normalised to UTC, so one at the edge of the calendar is refused here rather than overflowing
# later in a comparison or a database driver.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


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
# Scope "function": the commit happens before the response is sent, so a 2xx never goes out for
# work whose commit then fails (with the default scope FastAPI commits after responding).
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
SessionFactoryDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_session_factory)]
HttpClientDep = Annotated[httpx.AsyncClient, Depends(get_http_client)]
