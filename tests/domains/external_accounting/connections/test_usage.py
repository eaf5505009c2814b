"""A connection's usage: calls and response bytes per UTC day, as the sandbox counted the calls
and as the bytes came off the wire, served at GET /connections/{id}/usage to the organisation's
members only (another organisation's connection is a 404)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.database import utcnow
from src.domains.organizations.models import Organization, Role
from src.xero_sandbox.server import RunningSandbox
from tests.factories import add_member, bearer, create_org_with_user
from tests.fixtures import connected_org, reset_sandbox_stats, sandbox_stats, sync


def _url(prefix: str, connection_id: object) -> str:
    return f"{prefix}/connections/{connection_id}/usage"


async def test_usage_matches_the_sandboxs_calls_and_the_bytes_received(
    app: FastAPI,
    client: httpx.AsyncClient,
    session_factory: async_sessionmaker[AsyncSession],
    fresh_sandbox: RunningSandbox,
) -> None:
    org = await connected_org(client, session_factory)
    received: Counter[str] = Counter()

    async def count_bytes(response: httpx.Response) -> None:
        if "/api.xro/2.0/" in str(response.request.url):
            # Read first: `received[t] += await ...` reads received[t] before the await, and a
            # full sync's calls run side by side, so one response's bytes would overwrite another's.
            size = len(await response.aread())
            received[response.request.headers["xero-tenant-id"]] += size

    app.state.http_client.event_hooks["response"].append(count_bytes)
    reset_sandbox_stats(fresh_sandbox)
    await sync(client, org.key, org.org_id, incremental="false")
    await sync(client, org.key, org.org_id, "accounts")
    await sync(client, org.key, org.org_id)

    by_tenant = sandbox_stats(fresh_sandbox)["by_tenant"]
    today = utcnow().date()
    for connection in org.connections:
        response = await client.get(
            _url("/external-accounting", connection.id),
            params={"org_id": str(org.org_id)},
            headers=bearer(org.key),
        )
        assert response.status_code == 200, response.text
        usage = response.json()
        assert usage["connection_id"] == str(connection.id)
        assert len(usage["days"]) == 30
        assert usage["days"][-1]["day"] == today.isoformat()
        assert usage["days"][0]["day"] == (today - timedelta(days=29)).isoformat()
        assert all(day["calls"] == 0 for day in usage["days"][:-1])
        calls = by_tenant[connection.tenant_id]
        assert calls > 2
        assert usage["days"][-1]["calls"] == calls
        assert usage["days"][-1]["bytes"] == received[connection.tenant_id] > 0
        assert usage["month"] == {
            "month": today.strftime("%Y-%m"),
            "calls": calls,
            "bytes": received[connection.tenant_id],
        }


@pytest.mark.parametrize("prefix", ["/external-accounting", "/integrations"])
async def test_who_may_read_a_connections_usage(
    client: httpx.AsyncClient,
    session_factory: async_sessionmaker[AsyncSession],
    fresh_sandbox: RunningSandbox,
    prefix: str,
) -> None:
    org = await connected_org(client, session_factory)
    connection = org.connections[0]
    params = {"org_id": str(org.org_id)}
    url = _url(prefix, connection.id)
    organization_row = await _organization(session_factory, org.org_id)
    member = await add_member(session_factory, organization_row, Role.MEMBER, "m@acme.test")

    as_member = await client.get(url, params={**params, "days": 7}, headers=bearer(member))
    assert as_member.status_code == 200, as_member.text
    assert len(as_member.json()["days"]) == 7

    assert (await client.get(url, params=params)).status_code == 401

    other, _, other_key = await create_org_with_user(session_factory, name="Other")
    # Another organisation's member asking about this one: not a member (403).
    not_member = await client.get(url, params=params, headers=bearer(other_key))
    assert not_member.status_code == 403
    # ... and about this connection through their own organisation: it does not exist (404).
    foreign = await client.get(url, params={"org_id": str(other.id)}, headers=bearer(other_key))
    assert foreign.status_code == 404
    assert foreign.json()["error"] == "connection_not_found"
    unknown = await client.get(_url(prefix, uuid.uuid4()), params=params, headers=bearer(member))
    assert unknown.status_code == 404

    for days in ("0", "367", "x"):
        refused = await client.get(url, params={**params, "days": days}, headers=bearer(member))
        assert refused.status_code == 422, days
        assert refused.json()["error"] == "invalid_parameter"


async def _organization(
    session_factory: async_sessionmaker[AsyncSession], org_id: uuid.UUID
) -> Organization:
    async with session_factory() as session:
        organization = await session.get(Organization, org_id)
    assert organization is not None
    return organization
