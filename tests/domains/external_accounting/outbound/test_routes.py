"""The webhook-endpoint API: admins register, list and delete endpoints; the signing secret is
answered once and is never in a listing, a log line or the database in plaintext."""

from __future__ import annotations

import logging
import uuid

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.domains.external_accounting.outbound.models import WebhookEndpoint
from src.domains.organizations.models import Role
from tests.factories import add_member, bearer, create_org_with_user

URL = "/external-accounting/webhook-endpoints"
BODY = {"url": "https://erp.example.com/hooks", "event_types": ["sync.finished", "sync.failed"]}


async def test_an_admin_registers_an_endpoint_and_sees_its_secret_once(
    client: httpx.AsyncClient,
    session_factory: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    organization, _, key = await create_org_with_user(session_factory)
    params = {"org_id": str(organization.id)}
    created = await client.post(URL, params=params, json=BODY, headers=bearer(key))
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["secret"]
    assert secret.startswith("whsec_")
    assert len(secret) > 30
    assert body["event_types"] == ["sync.failed", "sync.finished"]

    listed = await client.get("/integrations/webhook-endpoints", params=params, headers=bearer(key))
    assert listed.status_code == 200
    assert [e["id"] for e in listed.json()["endpoints"]] == [body["id"]]
    assert secret not in listed.text
    assert "secret" not in listed.text

    async with session_factory() as session:
        stored = (await session.execute(select(WebhookEndpoint))).scalars().one()
    assert secret not in stored.secret_ciphertext
    assert secret.removeprefix("whsec_") not in stored.secret_ciphertext
    assert secret not in caplog.text

    deleted = await client.delete(f"{URL}/{body['id']}", params=params, headers=bearer(key))
    assert deleted.status_code == 204
    again = await client.delete(f"{URL}/{body['id']}", params=params, headers=bearer(key))
    assert again.status_code == 404
    assert again.json()["error"] == "webhook_endpoint_not_found"


@pytest.mark.parametrize(
    "url",
    [
        "http://erp.example.com/hooks",  # plain http to another machine
        "ftp://erp.example.com/hooks",
        "https://user:password@erp.example.com/hooks",
        "not a url",
    ],
)
async def test_urls_events_cannot_safely_go_to_are_refused(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession], url: str
) -> None:
    organization, _, key = await create_org_with_user(session_factory)
    response = await client.post(
        URL, params={"org_id": str(organization.id)}, json={**BODY, "url": url}, headers=bearer(key)
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] in ("invalid_webhook_url", "invalid_parameter")


async def test_http_to_localhost_and_unknown_events(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    organization, _, key = await create_org_with_user(session_factory)
    params = {"org_id": str(organization.id)}
    local = {**BODY, "url": "http://127.0.0.1:9/hooks"}
    assert (
        await client.post(URL, params=params, json=local, headers=bearer(key))
    ).status_code == 201
    unknown = {**BODY, "event_types": ["invoice.eaten"]}
    response = await client.post(URL, params=params, json=unknown, headers=bearer(key))
    assert response.status_code == 422
    none = {**BODY, "event_types": []}
    assert (
        await client.post(URL, params=params, json=none, headers=bearer(key))
    ).status_code == 422


async def test_members_are_refused_and_other_organisations_see_nothing(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    organization, _, key = await create_org_with_user(session_factory)
    member_key = await add_member(session_factory, organization, Role.MEMBER, "m@acme.test")
    other, _, other_key = await create_org_with_user(session_factory, name="Other")
    params = {"org_id": str(organization.id)}
    created = (await client.post(URL, params=params, json=BODY, headers=bearer(key))).json()

    for method, path in (
        ("POST", URL),
        ("GET", URL),
        ("DELETE", f"{URL}/{created['id']}"),
        ("GET", f"{URL}/{created['id']}/deliveries"),
    ):
        response = await client.request(
            method, path, params=params, json=BODY, headers=bearer(member_key)
        )
        assert response.status_code == 403, (method, path, response.text)

    # The other organisation's admin, asking under its own organisation, finds no such endpoint.
    theirs = {"org_id": str(other.id)}
    for method, path in (
        ("DELETE", f"{URL}/{created['id']}"),
        ("GET", f"{URL}/{created['id']}/deliveries"),
    ):
        response = await client.request(method, path, params=theirs, headers=bearer(other_key))
        assert response.status_code == 404, (method, path, response.text)
    listed = await client.get(URL, params=theirs, headers=bearer(other_key))
    assert listed.json() == {"endpoints": []}
    # Nor may it name the first organisation.
    assert (await client.get(URL, params=params, headers=bearer(other_key))).status_code in (
        403,
        404,
    )
    unknown = await client.get(
        f"{URL}/{uuid.uuid4()}/deliveries", params=params, headers=bearer(key)
    )
    assert unknown.status_code == 404
