"""Token sets we stop using are revoked at Xero, even when Xero does not answer at first; expired
OAuth states are purged."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from src.cli import app as cli
from src.core.crypto import TokenCipher
from src.core.database import utcnow
from src.core.settings import Settings, get_settings
from src.domains.external_accounting.connections.models import (
    OAuthGrant,
    OAuthState,
    PendingRevocation,
)
from src.domains.external_accounting.xero.auth.identity_client import XeroIdentityClient
from src.domains.external_accounting.xero.auth.revocations import run_maintenance
from src.xero_sandbox.server import RunningSandbox
from tests.factories import bearer, create_org_with_user
from tests.fixtures import (
    connect,
    create_link,
    inject_faults,
    running_app,
    service_environment,
    start_connect,
)


async def _pending(session_factory: async_sessionmaker[AsyncSession]) -> list[PendingRevocation]:
    async with session_factory() as session:
        return list((await session.execute(select(PendingRevocation))).scalars())


async def _make_due(session_factory: async_sessionmaker[AsyncSession]) -> None:
    async with session_factory() as session:
        await session.execute(
            update(PendingRevocation).values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()


def _revoked_at_xero(sandbox: RunningSandbox, auth_event_id: str | None) -> bool:
    assert auth_event_id is not None
    return sandbox.runtime.identity.grants[auth_event_id].revoked


def _cli_environment(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, sandbox: RunningSandbox
) -> None:
    for name, value in service_environment(settings, sandbox).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


async def test_a_revocation_xero_does_not_confirm_is_kept_and_retried(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    organization, _, key = await create_org_with_user(session_factory)
    body = await connect(client, key, organization.id)
    async with session_factory() as session:
        grant = (await session.execute(select(OAuthGrant))).scalar_one()
    refresh_token = TokenCipher.from_settings(settings).decrypt(grant.refresh_token_encrypted or "")
    inject_faults(fresh_sandbox, path_contains="/connect/revocation", next_errors=[503, 503])
    for connection in body["connections"]:
        response = await client.delete(
            f"/external-accounting/connections/{connection['id']}", headers=bearer(key)
        )
        assert response.status_code == 204
    # Xero answered 503: the token set is still live there, and kept here (encrypted) to retry.
    assert not _revoked_at_xero(fresh_sandbox, grant.auth_event_id)
    [pending] = await _pending(session_factory)
    assert (pending.reason, pending.attempts) == ("disconnected", 1)
    assert pending.last_error
    assert refresh_token not in pending.refresh_token_encrypted
    assert pending.next_attempt_at > utcnow()
    async with session_factory() as session:
        assert (await session.execute(select(OAuthGrant))).scalars().all() == []

    # Not yet due: nothing happens.
    async with httpx.AsyncClient() as http:
        identity = XeroIdentityClient(http, settings)
        cipher = TokenCipher.from_settings(settings)
        report = await run_maintenance(session_factory, settings, cipher, identity)
    assert (report.revoked, report.still_pending) == (0, 0)

    # Due: a new process retries it at start-up; Xero fails again, so it backs off further.
    await _make_due(session_factory)
    async with running_app(settings):
        for _ in range(200):
            [pending] = await _pending(session_factory)
            if pending.attempts == 2:
                break
            await asyncio.sleep(0.02)
    assert pending.attempts == 2
    assert pending.next_attempt_at > utcnow() + timedelta(
        seconds=settings.revocation_retry_base_seconds * 1.5
    )
    assert not _revoked_at_xero(fresh_sandbox, grant.auth_event_id)

    # The operator's command retries what is due; this time Xero confirms.
    await _make_due(session_factory)
    _cli_environment(monkeypatch, settings, fresh_sandbox)
    try:
        result = await asyncio.to_thread(CliRunner().invoke, cli, ["revocations", "retry"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "revoked 1, still pending 0" in result.stdout
    assert await _pending(session_factory) == []
    assert _revoked_at_xero(fresh_sandbox, grant.auth_event_id)


async def test_a_replaced_token_set_is_revoked_at_xero(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    organization, _, key = await create_org_with_user(session_factory)
    await connect(client, key, organization.id)
    async with session_factory() as session:
        old = (await session.execute(select(OAuthGrant))).scalar_one()
    reconnected = await connect(client, key, organization.id)
    assert _revoked_at_xero(fresh_sandbox, old.auth_event_id)
    assert await _pending(session_factory) == []
    # The new token set still reads every tenant.
    async with session_factory() as session:
        new = (await session.execute(select(OAuthGrant))).scalar_one()
    token = TokenCipher.from_settings(settings).decrypt(new.access_token_encrypted or "")
    for connection in reconnected["connections"]:
        response = httpx.get(
            f"{fresh_sandbox.base_url}/api.xro/2.0/Currencies",
            headers={
                "Authorization": f"Bearer {token}",
                "xero-tenant-id": connection["tenant_id"],
            },
        )
        assert response.status_code == 200


@pytest.mark.usefixtures("fresh_sandbox")
async def test_expired_states_and_connect_sessions_are_purged(
    client: httpx.AsyncClient,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    organization, _, key = await create_org_with_user(session_factory)
    for _ in range(2):
        await start_connect(client, key, organization.id)
        await create_link(client, key, organization.id)
    async with session_factory() as session:
        states = list((await session.execute(select(OAuthState))).scalars())
        retention = timedelta(seconds=settings.oauth_state_retention_seconds)
        long_ago = utcnow() - retention - timedelta(seconds=5)
        just_now = utcnow() - timedelta(seconds=5)
        # One of each kind expired long ago; one expired a moment ago (a late callback should
        # still hear "expired"); the fourth is live.
        api_started = [s for s in states if s.link_secret_hash is None]
        links = [s for s in states if s.link_secret_hash is not None]
        api_started[0].expires_at = links[0].expires_at = long_ago
        api_started[1].expires_at = just_now
        gone = {api_started[0].id, links[0].id}
        await session.commit()
    async with httpx.AsyncClient() as http:
        report = await run_maintenance(
            session_factory,
            settings,
            TokenCipher.from_settings(settings),
            XeroIdentityClient(http, settings),
        )
    assert report.states_purged == 2
    async with session_factory() as session:
        left = {s.id for s in (await session.execute(select(OAuthState))).scalars()}
    assert left == {s.id for s in states} - gone
