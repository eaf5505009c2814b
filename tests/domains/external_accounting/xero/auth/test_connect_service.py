"""The browser-style connect flow against the sandbox, and every way it can be refused.

Long because each refusal (state, binding, link, tenant held elsewhere) is its own case."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.crypto import TokenCipher
from src.core.database import utcnow
from src.core.settings import Settings
from src.domains.external_accounting.connections.models import Connection, OAuthGrant, OAuthState
from src.domains.organizations.models import Role
from src.xero_sandbox.server import RunningSandbox
from tests.factories import add_member, bearer, create_org_with_user
from tests.fixtures import (
    add_tenant,
    app_client,
    approve,
    callback,
    connect,
    connect_response,
    create_link,
    open_link,
    reads_at_xero,
    start_connect,
    tenant_ids,
)


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


async def _pending(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> tuple[dict[str, str], str]:
    organization, _, key = await create_org_with_user(session_factory)
    return await approve(await start_connect(client, key, organization.id)), key


@pytest.mark.usefixtures("fresh_sandbox")
async def test_replayed_state_is_refused(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    params, key = await _pending(client, session_factory)
    assert (await callback(client, params, **bearer(key))).status_code == 200
    replay = await callback(client, params, **bearer(key))
    assert replay.status_code == 400
    assert replay.json()["error"] == "state_already_used"


@pytest.mark.usefixtures("fresh_sandbox")
async def test_tampered_and_unknown_states_are_refused(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    params, key = await _pending(client, session_factory)
    state_id, _, secret = params["state"].partition(".")
    as_api = bearer(key)
    tampered = await callback(client, {**params, "state": f"{state_id}.{secret[:-3]}abc"}, **as_api)
    assert tampered.status_code == 400
    assert tampered.json()["error"] == "state_tampered"
    unknown = await callback(client, {**params, "state": f"{uuid.uuid4().hex}.{secret}"}, **as_api)
    assert unknown.json()["error"] == "invalid_state"
    garbage = await callback(client, {**params, "state": "not-a-state"}, **as_api)
    assert garbage.status_code == 400
    assert garbage.json()["error"] == "invalid_state"
    missing = await client.get("/external-accounting/xero/callback", params={"code": "x"})
    assert missing.status_code == 422
    assert missing.json()["error"] == "invalid_parameter"


@pytest.mark.usefixtures("fresh_sandbox")
async def test_expired_state_is_refused(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    params, key = await _pending(client, session_factory)
    async with session_factory() as session:
        await session.execute(update(OAuthState).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()
    response = await callback(client, params, **bearer(key))
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
async def test_state_finished_with_the_users_key_of_another_organisation_is_refused(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    organization, user, key = await create_org_with_user(session_factory)
    params = await approve(await start_connect(client, key, organization.id))
    other, _, _ = await create_org_with_user(session_factory, name="Elsewhere")
    others_key = await add_member(session_factory, other, Role.ADMIN, user.email)
    response = await callback(client, params, **bearer(others_key))
    assert (response.status_code, response.json()["error"]) == (403, "state_mismatch")
    assert "another organisation" in response.json()["detail"]
    assert (await callback(client, params, **bearer(key))).status_code == 200


@pytest.mark.usefixtures("fresh_sandbox")
async def test_wrong_pkce_verifier_fails_the_exchange(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    params, key = await _pending(client, session_factory)
    cipher = TokenCipher.from_settings(settings)
    async with session_factory() as session:
        await session.execute(
            update(OAuthState).values(code_verifier_encrypted=cipher.encrypt("w" * 60))
        )
        await session.commit()
    response = await callback(client, params, **bearer(key))
    assert response.status_code == 400
    assert response.json()["error"] == "oauth_exchange_failed"


@pytest.mark.usefixtures("fresh_sandbox")
async def test_user_denying_consent_is_a_clear_error(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    params, key = await _pending(client, session_factory)
    response = await callback(
        client, {"state": params["state"], "error": "access_denied"}, **bearer(key)
    )
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


# -- item 12: a connect link binds the flow to the browser that opened it ----------------------


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A person's browser: its own cookie jar, no API key."""
    async with app_client(app) as jar:
        yield jar


@pytest.fixture
async def other_browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Somebody else's browser (an attacker's, or a victim's)."""
    async with app_client(app) as jar:
        yield jar


async def test_connect_link_opened_in_a_browser_ends_on_a_page(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    add_tenant(fresh_sandbox, "<script>alert(1)</script> & Sons", 1)
    organization, _, key = await create_org_with_user(session_factory, name="Acme <Ltd>")
    link = await create_link(client, key, organization.id)
    assert link["url"].startswith("http://testserver/external-accounting/connect-sessions/")
    assert datetime.fromisoformat(link["expires_at"]) > utcnow()
    opened = await browser.get(link["url"])
    assert opened.status_code == 302
    assert opened.headers["location"].startswith(f"{fresh_sandbox.base_url}/identity/connect/")
    cookie = opened.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/external-accounting/xero/callback" in cookie
    async with session_factory() as session:
        state = (await session.execute(select(OAuthState))).scalar_one()
    # Only hashes are stored.
    assert state.browser_binding_hash is not None
    assert opened.cookies[f"ledgersync_connect_{state.id.hex}"] not in (
        state.browser_binding_hash,
        state.link_secret_hash,
    )
    page = await callback(browser, await approve(opened.headers["location"]))
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "Xero connected" in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Sons" in page.text
    assert "<script>" not in page.text
    assert "Acme &lt;Ltd&gt;" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    async with session_factory() as session:
        connections = (await session.execute(select(Connection))).scalars().all()
    assert len(connections) == 3
    assert {c.organization_id for c in connections} == {organization.id}
    # The link is single use.
    again = await browser.get(link["url"])
    assert again.status_code == 400
    assert "connect_link_used" in again.text


async def test_consent_brought_back_by_another_browser_is_refused(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    other_browser: httpx.AsyncClient,
    session_factory: async_sessionmaker[AsyncSession],
    fresh_sandbox: RunningSandbox,
) -> None:
    organization, _, key = await create_org_with_user(session_factory)
    link = await create_link(client, key, organization.id)
    authorize_url = await open_link(browser, link["url"])
    # The admin forwards Xero's authorize URL; whoever consents comes back without our cookie.
    stolen = await callback(other_browser, await approve(authorize_url))
    assert stolen.status_code == 403
    assert stolen.headers["content-type"].startswith("text/html")
    assert "state_not_bound" in stolen.text
    as_api = await callback(other_browser, await approve(authorize_url), accept="application/json")
    assert (as_api.status_code, as_api.json()["error"]) == (403, "state_not_bound")
    # A forged cookie does not help either.
    name = next(iter(browser.cookies.keys()))
    other_browser.cookies.set(name, "forged", domain="testserver.local")
    forged = await callback(other_browser, await approve(authorize_url), accept="application/json")
    assert (forged.status_code, forged.json()["error"]) == (403, "state_not_bound")
    async with session_factory() as session:
        assert (await session.execute(select(Connection))).scalars().all() == []
    # Refusals do not spend the state: the admin's own browser still finishes.
    own = await callback(browser, await approve(authorize_url))
    assert own.status_code == 200, own.text
    assert "Xero connected" in own.text
    assert fresh_sandbox


async def test_api_started_flow_needs_the_starting_key_at_the_callback(
    client: httpx.AsyncClient,
    other_browser: httpx.AsyncClient,
    session_factory: async_sessionmaker[AsyncSession],
    fresh_sandbox: RunningSandbox,
) -> None:
    organization, _, key = await create_org_with_user(session_factory)
    authorize_url = await start_connect(client, key, organization.id)
    page = await callback(other_browser, await approve(authorize_url))
    assert page.status_code == 403
    assert "state_not_bound" in page.text
    async with session_factory() as session:
        assert (await session.execute(select(Connection))).scalars().all() == []
    done = await callback(client, await approve(authorize_url), **bearer(key))
    assert done.status_code == 200
    assert len(done.json()["connections"]) == len(tenant_ids(fresh_sandbox))


@pytest.mark.usefixtures("fresh_sandbox")
async def test_browser_flow_redirects_to_the_success_and_failure_urls(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    other_browser: httpx.AsyncClient,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    organization, _, key = await create_org_with_user(session_factory)
    settings.xero_connect_success_url = "https://app.example.com/connected"
    settings.xero_connect_failure_url = "https://app.example.com/not-connected"
    try:
        link = await create_link(client, key, organization.id)
        authorize_url = await open_link(browser, link["url"])
        refused = await callback(other_browser, await approve(authorize_url))
        done = await callback(browser, await approve(authorize_url))
    finally:
        settings.xero_connect_success_url = None
        settings.xero_connect_failure_url = None
    assert refused.status_code == 302
    assert (
        refused.headers["location"] == "https://app.example.com/not-connected?error=state_not_bound"
    )
    assert done.status_code == 302
    assert done.headers["location"].startswith(
        f"https://app.example.com/connected?org_id={organization.id}&connections=2"
    )
    # The binding cookie is cleared once the flow is over.
    assert "Max-Age=0" in done.headers["set-cookie"]


@pytest.mark.usefixtures("fresh_sandbox")
async def test_connect_links_are_for_admins_and_expire(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    organization, _, key = await create_org_with_user(session_factory)
    member_key = await add_member(session_factory, organization, Role.MEMBER, "m@acme.test")
    url = "/external-accounting/connect-sessions"
    org = {"org_id": str(organization.id)}
    member = await client.post(url, params=org, headers=bearer(member_key))
    assert (member.status_code, member.json()["error"]) == (403, "insufficient_role")
    assert (await client.post(url, params=org)).status_code == 401
    link = await create_link(client, key, organization.id)
    tampered = await browser.get(link["url"][:-4] + "abcd")
    assert tampered.status_code == 400
    assert "state_tampered" in tampered.text
    async with session_factory() as session:
        await session.execute(update(OAuthState).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()
    expired = await browser.get(link["url"])
    assert expired.status_code == 400
    assert "state_expired" in expired.text
    unknown = await browser.get(f"{url}/{uuid.uuid4().hex}/open", params={"secret": "x"})
    assert unknown.status_code == 404
    assert "connect_link_not_found" in unknown.text


# -- item 13: two concurrent callbacks cannot both consume a state ------------------------------


@pytest.mark.usefixtures("fresh_sandbox")
async def test_concurrent_callbacks_consume_the_state_once(
    client: httpx.AsyncClient,
    session_factory: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    params, key = await _pending(client, session_factory)
    racers = 4
    # Force the worst interleaving: every callback has read the state before the first one
    # commits its consumption (each waits, up to a moment, for the others to get that far).
    arrived, everyone_read = 0, asyncio.Event()
    original_commit = AsyncSession.commit

    async def commit_after_the_others(self: AsyncSession) -> None:
        nonlocal arrived
        arrived += 1
        if arrived <= racers:
            if arrived == racers:
                everyone_read.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(everyone_read.wait(), 0.5)
        await original_commit(self)

    monkeypatch.setattr(AsyncSession, "commit", commit_after_the_others)
    responses = await asyncio.gather(
        *(callback(client, params, **bearer(key)) for _ in range(racers))
    )
    monkeypatch.undo()
    outcomes = sorted((r.status_code, r.json().get("error")) for r in responses)
    assert outcomes == [(200, None)] + [(400, "state_already_used")] * (racers - 1), outcomes


# -- item 11: a Xero organisation belongs to one ledgersync organisation at a time --------------


async def _access_token(
    session_factory: async_sessionmaker[AsyncSession], settings: Settings, org_id: uuid.UUID
) -> str:
    async with session_factory() as session:
        grant = (
            await session.execute(select(OAuthGrant).where(OAuthGrant.organization_id == org_id))
        ).scalar_one()
    return TokenCipher.from_settings(settings).decrypt(grant.access_token_encrypted or "")


async def test_a_tenant_another_organisation_holds_is_refused(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    first, _, first_key = await create_org_with_user(session_factory, name="First")
    second, _, second_key = await create_org_with_user(session_factory, name="Second")
    await connect(client, first_key, first.id)
    refused = await connect_response(client, second_key, second.id)
    assert refused.status_code == 409
    assert refused.json()["error"] == "tenant_connected_elsewhere"
    assert "another ledgersync organisation" in refused.json()["detail"]
    assert sorted(refused.json()["tenant_ids"]) == sorted(tenant_ids(fresh_sandbox))
    async with session_factory() as session:
        rows = (await session.execute(select(Connection))).scalars().all()
        grants = (await session.execute(select(OAuthGrant))).scalars().all()
    assert {c.organization_id for c in rows} == {first.id}
    assert [g.organization_id for g in grants] == [first.id]
    token = await _access_token(session_factory, settings, first.id)
    assert all(reads_at_xero(fresh_sandbox, token, t) for t in tenant_ids(fresh_sandbox))


async def test_sharing_a_consent_never_cuts_the_other_organisation_off(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    shared, free = tenant_ids(fresh_sandbox)
    first, _, first_key = await create_org_with_user(session_factory, name="First")
    second, _, second_key = await create_org_with_user(session_factory, name="Second")
    fresh_sandbox.runtime.config.auto_approve = False
    try:
        await connect(client, first_key, first.id, tenant_ids=[shared])
    finally:
        fresh_sandbox.runtime.config.auto_approve = True
    # The second organisation's consent covers both: the free one connects, the held one not.
    body = await connect(client, second_key, second.id)
    assert [c["tenant_id"] for c in body["connections"]] == [free]
    assert [(r["tenant_id"], r["error"]) for r in body["refused"]] == [
        (shared, "tenant_connected_elsewhere")
    ]
    # Disconnecting its only connection must not revoke the consent: at Xero that would remove
    # the connection to `shared`, which the first organisation now shares.
    response = await client.delete(
        f"/external-accounting/connections/{body['connections'][0]['id']}",
        headers=bearer(second_key),
    )
    assert response.status_code == 204
    token = await _access_token(session_factory, settings, first.id)
    assert reads_at_xero(fresh_sandbox, token, shared)


async def test_disconnect_never_deletes_at_xero_what_another_organisation_uses(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    first, _, first_key = await create_org_with_user(session_factory, name="First")
    second, _, second_key = await create_org_with_user(session_factory, name="Second")
    body = await connect(client, first_key, first.id)
    held = body["connections"][0]
    # Both organisations hold the tenant (as they could before this rule existed).
    async with session_factory() as session:
        session.add(
            Connection(
                organization_id=second.id,
                tenant_id=held["tenant_id"],
                tenant_name=held["tenant_name"],
            )
        )
        await session.commit()
    response = await client.delete(
        f"/external-accounting/connections/{held['id']}", headers=bearer(first_key)
    )
    assert response.status_code == 204
    sandbox_tenants = {c.tenant_id for c in fresh_sandbox.runtime.identity.connections.values()}
    assert held["tenant_id"] in sandbox_tenants
    assert second_key
