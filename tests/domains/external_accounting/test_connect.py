"""The browser-style connect flow against the sandbox, and every way it can be refused."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.crypto import TokenCipher
from src.core.database import utcnow
from src.core.settings import Settings
from src.domains.external_accounting.models import Connection, OAuthGrant, OAuthState
from src.domains.organizations.models import Role
from src.xero_sandbox.server import RunningSandbox
from tests.domains.external_accounting.connect_helpers import (
    approve,
    callback,
    connect,
    start_connect,
)
from tests.factories import add_member, bearer, create_org_with_user
from tests.sandbox_helpers import tenant_ids


async def test_connect_two_tenants_then_list_them(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    organization, _, key = await create_org_with_user(session_factory)
    url = await start_connect(client, key, organization.id)
    assert url.startswith(f"{fresh_sandbox.base_url}/identity/connect/authorize?")
    assert "code_challenge_method=S256" in url
    assert "scope=offline_access+accounting.invoices.read+accounting.settings.read" in url
    body = await connect(client, key, organization.id)
    assert {c["tenant_id"] for c in body["connections"]} == set(tenant_ids(fresh_sandbox))
    listed = await client.get(
        "/external-accounting/connections",
        params={"org_id": str(organization.id)},
        headers=bearer(key),
    )
    assert listed.status_code == 200
    assert {c["status"] for c in listed.json()} == {"active"}
    assert len(listed.json()) == 2
    # Both tenants came from one consent: they share one token set.
    async with session_factory() as session:
        assert len((await session.execute(select(OAuthGrant))).scalars().all()) == 1
    # The same router is served under /integrations.
    also = await client.get(
        "/integrations/connections", params={"org_id": str(organization.id)}, headers=bearer(key)
    )
    assert also.json() == listed.json()


async def test_connect_one_tenant_and_reconnect_updates_it(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    organization, _, key = await create_org_with_user(session_factory)
    second = tenant_ids(fresh_sandbox)[1]
    fresh_sandbox.runtime.config.auto_approve = False
    try:
        first_time = await connect(client, key, organization.id, tenant_ids=[second])
        again = await connect(client, key, organization.id, tenant_ids=[second])
    finally:
        fresh_sandbox.runtime.config.auto_approve = True
    assert [c["tenant_id"] for c in first_time["connections"]] == [second]
    assert again["connections"][0]["id"] == first_time["connections"][0]["id"]
    async with session_factory() as session:
        assert len((await session.execute(select(Connection))).scalars().all()) == 1
        # The replaced token set is gone; only the new one remains.
        assert len((await session.execute(select(OAuthGrant))).scalars().all()) == 1


async def test_callback_can_redirect_to_a_success_url(
    app: object,
    settings: Settings,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    organization, _, key = await create_org_with_user(session_factory)
    params = await approve(await start_connect(client, key, organization.id))
    settings.xero_connect_success_url = "https://app.example.com/connected"
    try:
        response = await callback(client, params)
    finally:
        settings.xero_connect_success_url = None
    assert response.status_code == 302
    assert response.headers["location"].startswith("https://app.example.com/connected?org_id=")


async def _pending(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> tuple[dict[str, str], str]:
    organization, _, key = await create_org_with_user(session_factory)
    return await approve(await start_connect(client, key, organization.id)), key


@pytest.mark.usefixtures("fresh_sandbox")
async def test_replayed_state_is_refused(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    params, _ = await _pending(client, session_factory)
    assert (await callback(client, params)).status_code == 200
    replay = await callback(client, params)
    assert replay.status_code == 400
    assert replay.json()["error"] == "state_already_used"


@pytest.mark.usefixtures("fresh_sandbox")
async def test_tampered_and_unknown_states_are_refused(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    params, _ = await _pending(client, session_factory)
    state_id, _, secret = params["state"].partition(".")
    tampered = await callback(client, {**params, "state": f"{state_id}.{secret[:-3]}abc"})
    assert tampered.status_code == 400
    assert tampered.json()["error"] == "state_tampered"
    unknown = await callback(client, {**params, "state": f"{uuid.uuid4().hex}.{secret}"})
    assert unknown.json()["error"] == "invalid_state"
    garbage = await callback(client, {**params, "state": "not-a-state"})
    assert garbage.status_code == 400
    assert garbage.json()["error"] == "invalid_state"
    missing = await client.get("/external-accounting/xero/callback", params={"code": "x"})
    assert missing.status_code == 422
    assert missing.json()["error"] == "invalid_parameter"


@pytest.mark.usefixtures("fresh_sandbox")
async def test_expired_state_is_refused(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    params, _ = await _pending(client, session_factory)
    async with session_factory() as session:
        await session.execute(update(OAuthState).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()
    response = await callback(client, params)
    assert response.status_code == 400
    assert response.json()["error"] == "state_expired"


@pytest.mark.usefixtures("fresh_sandbox")
async def test_state_started_by_another_user_is_refused(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    params, _ = await _pending(client, session_factory)
    _, _, stranger = await create_org_with_user(session_factory, name="Elsewhere")
    response = await callback(client, params, **bearer(stranger))
    assert response.status_code == 403
    assert response.json()["error"] == "state_mismatch"


@pytest.mark.usefixtures("fresh_sandbox")
async def test_wrong_pkce_verifier_fails_the_exchange(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    params, _ = await _pending(client, session_factory)
    cipher = TokenCipher.from_settings(settings)
    async with session_factory() as session:
        await session.execute(
            update(OAuthState).values(code_verifier_encrypted=cipher.encrypt("w" * 60))
        )
        await session.commit()
    response = await callback(client, params)
    assert response.status_code == 400
    assert response.json()["error"] == "oauth_exchange_failed"


@pytest.mark.usefixtures("fresh_sandbox")
async def test_user_denying_consent_is_a_clear_error(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    params, _ = await _pending(client, session_factory)
    response = await callback(client, {"state": params["state"], "error": "access_denied"})
    assert response.status_code == 400
    assert response.json()["error"] == "authorization_denied"


async def test_who_may_connect(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    organization, _, admin_key = await create_org_with_user(session_factory)
    member_key = await add_member(session_factory, organization, Role.MEMBER, "m@acme.test")
    _, _, outsider_key = await create_org_with_user(session_factory, name="Other")
    url = "/external-accounting/xero/connect"
    org = {"org_id": str(organization.id)}
    cases = [
        ({}, org, 401, "unauthenticated"),
        (bearer("lsk_nope_nope"), org, 401, "unauthenticated"),
        (bearer(member_key), org, 403, "insufficient_role"),
        (bearer(outsider_key), org, 403, "not_a_member"),
        (bearer(admin_key), {"org_id": str(uuid.uuid4())}, 404, "organization_not_found"),
        (bearer(admin_key), {"org_id": "123"}, 422, "invalid_parameter"),
    ]
    for headers, params, status, error in cases:
        response = await client.get(url, params=params, headers=headers)
        assert (response.status_code, response.json()["error"]) == (status, error), response.text
    ok = await client.get(url, params={**org, "mode": "json"}, headers=bearer(admin_key))
    assert ok.json()["authorize_url"].startswith("http")
