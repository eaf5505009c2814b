"""Token keep-alive against the sandbox: a token set idle past TOKEN_KEEPALIVE_DAYS is refreshed
(Xero sees the refresh, the stored token set rotates), a fresh one is left alone, one Xero
refuses leaves its connections `needs_reauth` with no secret in the logs; the hourly job runs
the same pass on a real worker."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.crypto import TokenCipher
from src.core.database import utcnow
from src.core.jobs import build_job_app, defer_job, run_jobs_in_process
from src.core.settings import Settings
from src.domains.external_accounting.base.factory import RESOURCES
from src.domains.external_accounting.connections.models import Connection, OAuthGrant
from src.domains.external_accounting.xero.auth.auth_manager import XeroAuthManager
from src.domains.external_accounting.xero.auth.keep_alive import keep_alive_pass
from src.xero_sandbox.server import RunningSandbox
from tests.fixtures import connected_org, reads_at_xero, service_environment, token_calls, wait_for

LEDGERSYNC = Path(sys.executable).with_name("ledgersync")


def _manager(app: FastAPI) -> XeroAuthManager:
    manager: XeroAuthManager = app.state.xero_auth_manager
    return manager


async def _grant(session_factory: async_sessionmaker[AsyncSession]) -> OAuthGrant:
    async with session_factory() as session:
        return (await session.execute(select(OAuthGrant))).scalar_one()


async def _statuses(session_factory: async_sessionmaker[AsyncSession]) -> set[str]:
    async with session_factory() as session:
        return {c.status for c in (await session.execute(select(Connection))).scalars()}


async def _age(session_factory: async_sessionmaker[AsyncSession], days: float) -> None:
    """Make the stored token set look last refreshed `days` ago."""
    async with session_factory() as session:
        await session.execute(
            update(OAuthGrant).values(access_token_expires_at=utcnow() - timedelta(days=days))
        )
        await session.commit()


async def test_an_idle_token_set_is_refreshed_and_a_fresh_one_is_not(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    _, _, connections = await connected_org(client, session_factory)
    before = await _grant(session_factory)
    calls = token_calls(fresh_sandbox).get("refresh_token", 0)

    # Just connected: not idle, nothing to do.
    fresh = await keep_alive_pass(session_factory, _manager(app), settings)
    assert (fresh.idle, fresh.refreshed) == (0, [])
    assert token_calls(fresh_sandbox).get("refresh_token", 0) == calls

    # 31 days on (the clock compressed through `now`), the same token set is idle.
    later = utcnow() + timedelta(days=settings.token_keepalive_days + 1)
    report = await keep_alive_pass(session_factory, _manager(app), settings, now=later)
    assert report.idle == 1
    assert report.refreshed == [str(before.id)]
    assert token_calls(fresh_sandbox)["refresh_token"] == calls + 1  # one token set, one call
    after = await _grant(session_factory)
    assert after.token_version == before.token_version + 1
    assert after.refresh_token_encrypted != before.refresh_token_encrypted
    assert after.access_token_expires_at is not None
    assert after.access_token_expires_at > utcnow()
    cipher = TokenCipher.from_settings(settings)
    refresh_token = cipher.decrypt(after.refresh_token_encrypted or "")
    record = fresh_sandbox.runtime.identity.refresh_tokens[refresh_token]
    assert record.spent_at is None  # the new refresh token is Xero's live one
    assert reads_at_xero(
        fresh_sandbox, cipher.decrypt(after.access_token_encrypted or ""), connections[0].tenant_id
    )
    assert await _statuses(session_factory) == {"active"}


async def test_a_refused_token_set_marks_its_connections_needs_reauth(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await connected_org(client, session_factory)
    grant = await _grant(session_factory)
    cipher = TokenCipher.from_settings(settings)
    secrets = [
        cipher.decrypt(grant.refresh_token_encrypted or ""),
        cipher.decrypt(grant.access_token_encrypted or ""),
    ]
    # The customer revoked our access at Xero: the refresh token is dead.
    httpx.post(
        f"{fresh_sandbox.base_url}/connect/revocation",
        data={"token": secrets[0]},
        auth=(settings.xero_client_id, settings.xero_client_secret.get_secret_value()),
    ).raise_for_status()
    await _age(session_factory, settings.token_keepalive_days + 1)
    with caplog.at_level(logging.DEBUG):
        report = await keep_alive_pass(session_factory, _manager(app), settings)
    assert report.needs_reauth == [str(grant.id)]
    assert report.refreshed == []
    assert report.failed == []
    assert await _statuses(session_factory) == {"needs_reauth"}
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "needs reauthorisation" in logged
    assert not any(secret in logged for secret in secrets)
    # A needs_reauth token set is no longer idle work: the next pass leaves it.
    again = await keep_alive_pass(session_factory, _manager(app), settings)
    assert again.idle == 0


async def test_the_hourly_job_refreshes_idle_token_sets_on_a_worker(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    await connected_org(client, session_factory)
    before = await _grant(session_factory)
    await _age(session_factory, settings.token_keepalive_days + 1)
    job_app = build_job_app(settings)
    resources = {RESOURCES: app.state.resources}
    async with job_app.open_async(), run_jobs_in_process(job_app, additional_context=resources):
        await defer_job(job_app, "tokens.keep_alive", timestamp=int(utcnow().timestamp()))

        async def refreshed() -> bool:
            return (await _grant(session_factory)).token_version == before.token_version + 1

        await wait_for(refreshed, timeout=10)


async def test_the_cli_runs_one_pass(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    await connected_org(client, session_factory)
    await _age(session_factory, settings.token_keepalive_days + 1)
    environment = {**os.environ, **service_environment(settings, fresh_sandbox)}
    done = subprocess.run(
        [str(LEDGERSYNC), "tokens", "keep-alive"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "idle token sets 1: refreshed 1, need reauthorisation 0, failed 0" in done.stdout
    assert (await _grant(session_factory)).token_version == 1
