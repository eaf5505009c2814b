"""A disconnect answers for what it did: its answer comes after its commit, Xero hears of the
revoked token set only once the disconnect is stored, and no sync begun before it writes
after it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.ledger.models import Invoice, SyncRun
from src.domains.external_accounting.ledger.repository import LedgerRepository
from src.domains.external_accounting.ledger.runs import SyncRuns
from src.domains.external_accounting.xero.auth.identity_client import XeroIdentityClient
from src.xero_sandbox.server import RunningSandbox
from tests.factories import bearer, create_org_with_user
from tests.fixtures import connect, tenant_ids


@pytest.fixture
async def lenient_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that receives what the app sent, as a real one would, even when the app raised
    afterwards (the default ASGI transport re-raises the app's error instead)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def _status(session_factory: async_sessionmaker[AsyncSession], connection_id: str) -> str:
    async with session_factory() as session:
        connection = await session.get(Connection, uuid.UUID(connection_id))
        assert connection is not None
        return connection.status


async def test_a_disconnect_whose_commit_fails_never_answers_204(
    lenient_client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    org, _, key = await create_org_with_user(session_factory)
    held = (await connect(lenient_client, key, org.id))["connections"][0]
    # The commit that would store the disconnect fails (the database went away at that moment).
    fail_next_commit = False
    cancel_running_runs = LedgerRepository.cancel_running_runs
    commit = AsyncSession.commit

    async def cancelling(self: LedgerRepository, *args: Any, **kwargs: Any) -> Any:
        nonlocal fail_next_commit
        fail_next_commit = True
        return await cancel_running_runs(self, *args, **kwargs)

    async def failing_commit(self: AsyncSession) -> None:
        nonlocal fail_next_commit
        if fail_next_commit:
            fail_next_commit = False
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))
        await commit(self)

    monkeypatch.setattr(LedgerRepository, "cancel_running_runs", cancelling)
    monkeypatch.setattr(AsyncSession, "commit", failing_commit)
    url = f"/external-accounting/connections/{held['id']}"
    failed = await lenient_client.delete(url, headers=bearer(key))
    assert failed.status_code >= 500, failed.text
    assert await _status(session_factory, held["id"]) == "active"
    # Nothing was lost: the admin simply tries again (with the database back).
    monkeypatch.undo()
    assert (await lenient_client.delete(url, headers=bearer(key))).status_code == 204
    assert await _status(session_factory, held["id"]) == "disconnected"


async def test_xero_is_asked_to_revoke_only_once_the_disconnect_is_stored(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A revocation Xero confirms cannot be undone; sent before the commit, a failed commit
    would leave a connection that looks active with a token set Xero no longer honours."""
    org, _, key = await create_org_with_user(session_factory)
    monkeypatch.setattr(fresh_sandbox.runtime.config, "auto_approve", False)
    only = tenant_ids(fresh_sandbox)[0]  # the consent's only tenant: disconnecting it revokes
    held = (await connect(client, key, org.id, tenant_ids=[only]))["connections"][0]
    seen_while_revoking: list[str] = []
    revoke = XeroIdentityClient.revoke

    async def observed_revoke(self: XeroIdentityClient, refresh_token: str) -> None:
        seen_while_revoking.append(await _status(session_factory, held["id"]))
        await revoke(self, refresh_token)

    monkeypatch.setattr(XeroIdentityClient, "revoke", observed_revoke)
    response = await client.delete(
        f"/external-accounting/connections/{held['id']}", headers=bearer(key)
    )
    assert response.status_code == 204
    assert seen_while_revoking == ["disconnected"]


async def test_a_sync_requested_before_a_disconnect_starts_no_run_after_it(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One consent, two tenants: disconnecting one keeps the token set (the other uses it), so
    only the connection's own status can stop a sync whose request read it as active."""
    org, _, key = await create_org_with_user(session_factory)
    first, second = (await connect(client, key, org.id))["connections"][:2]
    take_lease = SyncRuns.take_lease

    async def disconnected_meanwhile(
        self: SyncRuns, repository: LedgerRepository, run: SyncRun
    ) -> None:
        if run.connection_id == uuid.UUID(first["id"]):
            response = await client.delete(
                f"/external-accounting/connections/{first['id']}", headers=bearer(key)
            )
            assert response.status_code == 204
        await take_lease(self, repository, run)

    monkeypatch.setattr(SyncRuns, "take_lease", disconnected_meanwhile)
    response = await client.post(
        "/external-accounting/invoices/sync",
        params={"org_id": str(org.id), "connection_id": first["id"]},
        headers=bearer(key),
    )
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "no_active_connection"
    async with session_factory() as session:
        runs = (await session.execute(select(func.count()).select_from(SyncRun))).scalar_one()
        invoices = (await session.execute(select(func.count()).select_from(Invoice))).scalar_one()
    assert (runs, invoices) == (0, 0)
    assert await _status(session_factory, second["id"]) == "active"
