"""XeroAuthManager: one refresh however many callers, needs_reauth when Xero says no (and only
then), a lost refresh answer retried, no lock held across the call to Xero, key rotation that
never undoes a refresh, and no secret anywhere in plaintext. Long because each of
those races needs its own arrangement."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from sqlalchemy import event, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.crypto import DecryptionFailed, TokenCipher
from src.core.database import utcnow
from src.core.settings import Settings
from src.domains.external_accounting.connections.encryption_keys import rotate_encryption
from src.domains.external_accounting.connections.models import Connection, OAuthGrant
from src.domains.external_accounting.exceptions import ReauthorisationRequired, TokenRefreshFailed
from src.domains.external_accounting.xero.auth.auth_manager import XeroAuthManager
from src.domains.external_accounting.xero.auth.identity_client import XeroIdentityClient
from src.models_registry import metadata
from src.xero_sandbox.server import RunningSandbox
from tests.factories import bearer, create_org_with_user
from tests.fixtures import (
    clear_token_faults,
    connect,
    connected_org,
    inject_token_faults,
    injected_token_faults,
    reads_at_xero,
    service_environment,
    token_calls,
)


async def _expire(session_factory: async_sessionmaker[AsyncSession]) -> None:
    async with session_factory() as session:
        await session.execute(
            update(OAuthGrant).values(access_token_expires_at=utcnow() - timedelta(minutes=1))
        )
        await session.commit()


def _manager(app: FastAPI) -> XeroAuthManager:
    manager: XeroAuthManager = app.state.xero_auth_manager
    return manager


def _refresh_worker(connection: Connection, callers: int) -> list[str]:
    return [sys.executable, "-m", "tests.domains.external_accounting.xero.auth.refresh_worker",
            str(connection.id), str(callers)]  # fmt: skip


async def _stored_grant(
    session_factory: async_sessionmaker[AsyncSession],
) -> OAuthGrant:
    async with session_factory() as session:
        return (await session.execute(select(OAuthGrant))).scalar_one()


def _live_at_xero(sandbox: RunningSandbox, refresh_token: str) -> bool:
    """The refresh token is Xero's current one for its token set (not spent, not unknown)."""
    record = sandbox.runtime.identity.refresh_tokens.get(refresh_token)
    return record is not None and record.spent_at is None


async def test_fifty_concurrent_callers_cause_exactly_one_refresh(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    _, _, connections = await connected_org(client, session_factory)
    await _expire(session_factory)
    before = token_calls(fresh_sandbox).get("refresh_token", 0)
    manager = _manager(app)
    # Both tenants share the token set, so callers for either must share the one refresh.
    tokens = await asyncio.gather(
        *(manager.get_access_token(connections[i % 2]) for i in range(50))
    )
    assert len(set(tokens)) == 1
    assert token_calls(fresh_sandbox)["refresh_token"] - before == 1
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
    _, _, connections = await connected_org(client, session_factory)
    await _expire(session_factory)
    before = token_calls(fresh_sandbox).get("refresh_token", 0)
    command = _refresh_worker(connections[0], 25)
    environment = {**os.environ, **service_environment(settings, fresh_sandbox)}
    workers = [
        await asyncio.create_subprocess_exec(
            *command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [await worker.communicate() for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], [o[1].decode()[-2000:] for o in outputs]
    tokens = {line for out, _ in outputs for line in out.decode().split()}
    assert len(tokens) == 1
    assert token_calls(fresh_sandbox)["refresh_token"] - before == 1


async def test_spent_refresh_token_marks_needs_reauth_and_fails_fast(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connections = await connected_org(client, session_factory)
    # Another party refreshed the same token set behind our back: our refresh token is spent.
    fresh_sandbox.runtime.identity.refresh_tokens.clear()
    await _expire(session_factory)
    manager = _manager(app)
    with pytest.raises(ReauthorisationRequired) as raised:
        await manager.get_access_token(connections[0])
    assert raised.value.status_code == 409
    assert raised.value.code == "reauthorisation_required"
    assert "/external-accounting/xero/connect?org_id=" in raised.value.to_body()["connect_url"]
    calls = token_calls(fresh_sandbox)["refresh_token"]
    async with session_factory() as session:
        reloaded = list((await session.execute(select(Connection))).scalars())
    assert {c.status for c in reloaded} == {"needs_reauth"}
    for connection in reloaded:  # fails fast: no more calls to Xero
        with pytest.raises(ReauthorisationRequired):
            await manager.get_access_token(connection)
    assert token_calls(fresh_sandbox)["refresh_token"] == calls
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
    _, _, connections = await connected_org(client, session_factory)
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
    org_id, key, connections = await connected_org(client, session_factory)
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
    _, _, connections = await connected_org(client, session_factory)
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
    _, key, connections = await connected_org(client, session_factory)
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
        # Read by another process: closing a descriptor of the file in this one would drop
        # every POSIX lock SQLite holds on it here, and later writers from other processes
        # would corrupt it ("disk I/O error").
        files = [str(p) for p in path.parent.glob(path.name + "*")]
        raw += subprocess.run(["cat", *files], capture_output=True, check=True).stdout
    for number, secret in enumerate(secrets):
        assert secret.encode() not in raw, f"secret #{number} is in the database"
        assert secret not in caplog.text, f"secret #{number} is in the logs: " + next(
            line for line in caplog.text.splitlines() if secret in line
        )


class _CipherThatLetsARefreshIn(TokenCipher):
    """Rotates like any cipher, but the first time it is asked to, another process refreshes
    the token set first: the moment `keys rotate-encryption` has read a grant and not yet
    written it back."""

    def __init__(self, keys: list[str], refresh: Callable[[], None]) -> None:
        super().__init__(keys)
        self._refresh: Callable[[], None] | None = refresh

    def rotate(self, ciphertext: str) -> str:
        if self._refresh is not None:
            refresh, self._refresh = self._refresh, None
            refresh()
        return super().rotate(ciphertext)


async def test_key_rotation_never_writes_old_tokens_over_a_concurrent_refresh(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    _, _, connections = await connected_org(client, session_factory)
    await _expire(session_factory)
    printed: list[str] = []

    def refresh_in_another_process() -> None:
        done = subprocess.run(
            _refresh_worker(connections[0], 1),
            env={**os.environ, **service_environment(settings, fresh_sandbox)},
            capture_output=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        printed.extend(done.stdout.decode().split())

    old = settings.token_encryption_keys.get_secret_value()
    new = Fernet.generate_key().decode()
    cipher = _CipherThatLetsARefreshIn([new, old], refresh_in_another_process)
    async with session_factory() as session:
        assert await rotate_encryption(session, cipher) >= 2
        await session.commit()
    assert len(printed) == 1  # the refresh happened, in the middle of the rotation
    grant = await _stored_grant(session_factory)
    only_new = TokenCipher([new])
    # The refreshed token set survived, re-encrypted with the new key...
    assert only_new.decrypt(grant.access_token_encrypted or "") == printed[0]
    refresh = only_new.decrypt(grant.refresh_token_encrypted or "")
    assert _live_at_xero(fresh_sandbox, refresh)
    with pytest.raises(DecryptionFailed):
        TokenCipher([old]).decrypt(grant.refresh_token_encrypted or "")
    # ...and still refreshes at Xero.
    identity = XeroIdentityClient(httpx.AsyncClient(), settings)
    assert (await identity.refresh(refresh)).access_token


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({"next_lost": 1}, id="answer-lost-after-xero-rotated"),
        pytest.param({"next_errors": [503, 502]}, id="5xx"),
        pytest.param({"next_without_refresh_token": 1}, id="200-without-refresh-token"),
        pytest.param({"next_lost": 2, "next_errors": [500]}, id="several-failures"),
    ],
)
async def test_a_lost_refresh_answer_is_retried_within_xeros_grace_period(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    faults: dict[str, object],
) -> None:
    _, _, connections = await connected_org(client, session_factory)
    await _expire(session_factory)
    inject_token_faults(fresh_sandbox, **faults)
    access = await _manager(app).get_access_token(connections[0])
    assert reads_at_xero(fresh_sandbox, access, connections[0].tenant_id)
    grant = await _stored_grant(session_factory)
    cipher = TokenCipher.from_settings(settings)
    assert cipher.decrypt(grant.access_token_encrypted or "") == access
    assert _live_at_xero(fresh_sandbox, cipher.decrypt(grant.refresh_token_encrypted or ""))
    assert grant.status == "active"
    assert grant.refresh_claim_id is None
    injected = injected_token_faults(fresh_sandbox)
    assert sum(injected.values()) >= 1


async def test_a_failed_commit_after_xero_rotated_keeps_the_new_tokens(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    _, _, connections = await connected_org(client, session_factory)
    await _expire(session_factory)
    engine = app.state.engine.sync_engine
    failed: list[str] = []

    def fail_first_token_write(
        _conn: object, _cursor: object, statement: str, *_args: object
    ) -> None:
        if (
            not failed
            and statement.startswith("UPDATE oauth_grants")
            and ("refresh_token_encrypted" in statement)
        ):
            failed.append(statement)
            raise OperationalError(statement, None, ConnectionError("server closed the connection"))

    event.listen(engine, "before_cursor_execute", fail_first_token_write)
    try:
        access = await _manager(app).get_access_token(connections[0])
    finally:
        event.remove(engine, "before_cursor_execute", fail_first_token_write)
    assert failed  # the write of the new tokens did fail once, after Xero had rotated them
    assert reads_at_xero(fresh_sandbox, access, connections[0].tenant_id)
    grant = await _stored_grant(session_factory)
    cipher = TokenCipher.from_settings(settings)
    assert cipher.decrypt(grant.access_token_encrypted or "") == access
    assert _live_at_xero(fresh_sandbox, cipher.decrypt(grant.refresh_token_encrypted or ""))


@pytest.mark.parametrize(
    ("faults", "gives_up_at_once"),
    [
        pytest.param({"next_errors": [503] * 10}, False, id="5xx-every-time"),
        pytest.param({"next_lost": 10}, False, id="every-answer-lost"),
        # A Retry-After of 3,000 years: clamped, and longer than the claim, so no sleeping.
        pytest.param(
            {"next_errors": [429], "error_retry_after": "99999999999"}, True, id="huge-retry-after"
        ),
        pytest.param({"next_errors": [429], "error_retry_after": "1e999"}, True, id="inf"),
    ],
)
async def test_a_refresh_that_keeps_failing_is_a_clear_temporary_error(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    faults: dict[str, object],
    gives_up_at_once: bool,
) -> None:
    _, _, connections = await connected_org(client, session_factory)
    await _expire(session_factory)
    before = await _stored_grant(session_factory)
    inject_token_faults(fresh_sandbox, **faults)
    calls = token_calls(fresh_sandbox).get("refresh_token", 0)
    manager = _manager(app)
    with pytest.raises(TokenRefreshFailed) as raised:
        await manager.get_access_token(connections[0])
    assert raised.value.code == "token_refresh_failed"
    assert "stays active" in raised.value.detail
    attempts = token_calls(fresh_sandbox)["refresh_token"] - calls
    assert attempts == (1 if gives_up_at_once else settings.xero_retry_attempts)
    after = await _stored_grant(session_factory)
    assert (after.status, after.token_version) == ("active", before.token_version)
    assert after.refresh_claim_id is None  # released: the next caller need not wait
    async with session_factory() as session:
        statuses = {c.status for c in (await session.execute(select(Connection))).scalars()}
    assert statuses == {"active"}
    # Once Xero answers again, the kept refresh token works (within the grace period when
    # Xero had rotated it).
    clear_token_faults(fresh_sandbox)
    access = await manager.get_access_token(connections[0])
    assert reads_at_xero(fresh_sandbox, access, connections[0].tenant_id)


async def test_other_writers_are_not_blocked_during_a_slow_refresh(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    _, _, connections = await connected_org(client, session_factory)
    await _expire(session_factory)
    slow_s = 2.0
    inject_token_faults(fresh_sandbox, latency_ms=slow_s * 1000)
    calls = token_calls(fresh_sandbox).get("refresh_token", 0)
    refresh = asyncio.create_task(_manager(app).get_access_token(connections[0]))
    while (await asyncio.to_thread(token_calls, fresh_sandbox)).get("refresh_token", 0) == calls:
        await asyncio.sleep(0.02)  # until the refresh is waiting on Xero
    started = time.monotonic()
    await create_org_with_user(session_factory, name="Another writer")  # in another session
    waited = time.monotonic() - started
    assert not refresh.done()
    assert waited < slow_s / 2, f"a writer waited {waited:.2f} s for the refresh"
    access = await refresh
    assert reads_at_xero(fresh_sandbox, access, connections[0].tenant_id)


async def test_a_claim_left_by_a_dead_process_expires(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    _, _, connections = await connected_org(client, session_factory)
    async with session_factory() as session:
        await session.execute(
            update(OAuthGrant).values(
                access_token_expires_at=utcnow() - timedelta(minutes=1),
                refresh_claim_id=uuid.uuid4(),
                refresh_claimed_until=utcnow() - timedelta(seconds=1),
            )
        )
        await session.commit()
    access = await _manager(app).get_access_token(connections[0])
    assert reads_at_xero(fresh_sandbox, access, connections[0].tenant_id)
    assert (await _stored_grant(session_factory)).refresh_claim_id is None
