"""XeroAuthManager: one refresh however many callers, needs_reauth when Xero says no, and no
secret anywhere in plaintext."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.crypto import TokenCipher
from src.core.database import utcnow
from src.core.settings import Settings
from src.domains.external_accounting.exceptions import ReauthorisationRequired
from src.domains.external_accounting.models import Connection, OAuthGrant
from src.domains.external_accounting.xero.auth.manager import XeroAuthManager
from src.models_registry import metadata
from src.xero_sandbox.server import RunningSandbox
from tests.domains.external_accounting.connect_helpers import connect
from tests.factories import bearer, create_org_with_user


def _stats(sandbox: RunningSandbox) -> dict[str, int]:
    calls: dict[str, int] = httpx.get(f"{sandbox.base_url}/_sandbox/stats").json()["token_calls"]
    return calls


async def _connected(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> tuple[list[Connection], str, object]:
    organization, _, key = await create_org_with_user(session_factory)
    await connect(client, key, organization.id)
    async with session_factory() as session:
        connections = list((await session.execute(select(Connection))).scalars())
    return connections, key, organization.id


async def _expire(session_factory: async_sessionmaker[AsyncSession]) -> None:
    async with session_factory() as session:
        await session.execute(
            update(OAuthGrant).values(access_token_expires_at=utcnow() - timedelta(minutes=1))
        )
        await session.commit()


def _manager(app: FastAPI) -> XeroAuthManager:
    manager: XeroAuthManager = app.state.xero_auth_manager
    return manager


async def test_fifty_concurrent_callers_cause_exactly_one_refresh(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    connections, _, _ = await _connected(client, session_factory)
    await _expire(session_factory)
    before = _stats(fresh_sandbox).get("refresh_token", 0)
    manager = _manager(app)
    # Both tenants share the token set, so callers for either must share the one refresh.
    tokens = await asyncio.gather(
        *(manager.get_access_token(connections[i % 2]) for i in range(50))
    )
    assert len(set(tokens)) == 1
    assert _stats(fresh_sandbox)["refresh_token"] - before == 1
    # The fresh token works at Xero, for both tenants.
    for connection in connections:
        response = httpx.get(
            f"{fresh_sandbox.base_url}/api.xro/2.0/Accounts",
            headers={
                "Authorization": f"Bearer {tokens[0]}",
                "xero-tenant-id": connection.tenant_id,
            },
        )
        assert response.status_code == 200


async def test_two_processes_cause_exactly_one_refresh(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    connections, _, _ = await _connected(client, session_factory)
    await _expire(session_factory)
    before = _stats(fresh_sandbox).get("refresh_token", 0)
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "ENVIRONMENT": "test",
        "TOKEN_ENCRYPTION_KEYS": settings.token_encryption_keys.get_secret_value(),
        "XERO_TOKEN_URL": settings.xero_token_url,
        "XERO_CLIENT_ID": settings.xero_client_id,
        "XERO_CLIENT_SECRET": settings.xero_client_secret.get_secret_value(),
    }
    command = [sys.executable, "-m", "tests.domains.external_accounting.refresh_worker",
               str(connections[0].id), "25"]  # fmt: skip
    workers = [
        await asyncio.create_subprocess_exec(
            *command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [await worker.communicate() for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], [o[1].decode()[-2000:] for o in outputs]
    tokens = {line for out, _ in outputs for line in out.decode().split()}
    assert len(tokens) == 1
    assert _stats(fresh_sandbox)["refresh_token"] - before == 1


async def test_spent_refresh_token_marks_needs_reauth_and_fails_fast(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    connections, key, org_id = await _connected(client, session_factory)
    # Another party refreshed the same token set behind our back: our refresh token is spent.
    fresh_sandbox.runtime.identity.refresh_tokens.clear()
    await _expire(session_factory)
    manager = _manager(app)
    with pytest.raises(ReauthorisationRequired) as raised:
        await manager.get_access_token(connections[0])
    assert raised.value.status_code == 409
    assert raised.value.code == "reauthorisation_required"
    assert "/external-accounting/xero/connect?org_id=" in raised.value.to_body()["connect_url"]
    calls = _stats(fresh_sandbox)["refresh_token"]
    async with session_factory() as session:
        reloaded = list((await session.execute(select(Connection))).scalars())
    assert {c.status for c in reloaded} == {"needs_reauth"}
    for connection in reloaded:  # fails fast: no more calls to Xero
        with pytest.raises(ReauthorisationRequired):
            await manager.get_access_token(connection)
    assert _stats(fresh_sandbox)["refresh_token"] == calls
    listed = await client.get(
        "/external-accounting/connections", params={"org_id": str(org_id)}, headers=bearer(key)
    )
    assert {c["status"] for c in listed.json()} == {"needs_reauth"}
    # Reconnecting heals it.
    await connect(client, key, org_id)
    async with session_factory() as session:
        healed = list((await session.execute(select(Connection))).scalars())
    assert {c.status for c in healed} == {"active"}
    assert await manager.get_access_token(healed[0])


async def test_access_revoked_at_xero_marks_needs_reauth(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    connections, _, _ = await _connected(client, session_factory)
    cipher = TokenCipher.from_settings(settings)
    async with session_factory() as session:
        grant = (await session.execute(select(OAuthGrant))).scalar_one()
    httpx.post(
        f"{fresh_sandbox.base_url}/connect/revocation",
        data={"token": cipher.decrypt(grant.refresh_token_encrypted or "")},
        auth=(settings.xero_client_id, settings.xero_client_secret.get_secret_value()),
    ).raise_for_status()
    await _expire(session_factory)
    with pytest.raises(ReauthorisationRequired):
        await _manager(app).get_access_token(connections[0])


async def test_disconnect_revokes_and_erases_tokens(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    connections, key, org_id = await _connected(client, session_factory)
    first, second = connections
    response = await client.delete(
        f"/external-accounting/connections/{first.id}", headers=bearer(key)
    )
    assert response.status_code == 204
    identity = fresh_sandbox.runtime.identity
    assert {c.tenant_id for c in identity.connections.values()} == {second.tenant_id}
    async with session_factory() as session:
        grant = (await session.execute(select(OAuthGrant))).scalar_one()  # still used by `second`
        assert grant.refresh_token_encrypted
    response = await client.delete(
        f"/external-accounting/connections/{second.id}", headers=bearer(key)
    )
    assert response.status_code == 204
    async with session_factory() as session:
        assert (await session.execute(select(OAuthGrant))).scalars().all() == []
        statuses = {c.status for c in (await session.execute(select(Connection))).scalars()}
    assert statuses == {"disconnected"}
    assert all(g.revoked for g in identity.grants.values())
    missing = await client.delete(
        f"/external-accounting/connections/{first.id}x", headers=bearer(key)
    )
    assert missing.status_code == 422


async def test_only_admins_of_the_connections_org_may_disconnect(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    connections, _, _ = await _connected(client, session_factory)
    _, _, stranger = await create_org_with_user(session_factory, name="Stranger")
    response = await client.delete(
        f"/external-accounting/connections/{connections[0].id}", headers=bearer(stranger)
    )
    assert response.status_code == 404
    assert response.json()["error"] == "connection_not_found"


async def test_no_secret_is_stored_or_logged_in_plaintext(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    connections, key, _ = await _connected(client, session_factory)
    await _expire(session_factory)
    access = await _manager(app).get_access_token(connections[0])
    cipher = TokenCipher.from_settings(settings)
    async with session_factory() as session:
        grant = (await session.execute(select(OAuthGrant))).scalar_one()
        refresh = cipher.decrypt(grant.refresh_token_encrypted or "")
        dump = ""
        for table in metadata.sorted_tables:
            rows = (await session.execute(text(f"SELECT * FROM {table.name}"))).all()
            dump += repr(rows)
    secrets = [
        access,
        refresh,
        key,
        key.split("_", 2)[2],
        settings.xero_client_secret.get_secret_value(),
    ]
    raw = dump.encode()
    if settings.is_sqlite:  # the database file itself, write-ahead log included
        path = Path(settings.database_url.split("///", 1)[1])
        raw += b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    for number, secret in enumerate(secrets):
        assert secret.encode() not in raw, f"secret #{number} is in the database"
        assert secret not in caplog.text, f"secret #{number} is in the logs: " + next(
            line for line in caplog.text.splitlines() if secret in line
        )
