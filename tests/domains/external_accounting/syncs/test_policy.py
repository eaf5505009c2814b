"""Who may start which sync, and how often an organisation may start them."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.settings import Settings
from src.domains.organizations.models import Organization, Role
from tests.factories import add_member, bearer, create_org_with_user
from tests.fixtures import connected_org, sync


@pytest.mark.usefixtures("fresh_sandbox")
async def test_full_syncs_are_for_admins(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    org_id, admin_key, connections = await connected_org(client, session_factory)
    async with session_factory() as session:
        organization = await session.get(Organization, org_id)
    assert organization is not None
    member_key = await add_member(session_factory, organization, Role.MEMBER, "m@acme.test")
    one: dict[str, str] = {"connection_id": str(connections[0].id)}
    full = await client.post(
        "/external-accounting/invoices/sync",
        params={"org_id": str(org_id), "incremental": "false", **one},
        headers=bearer(member_key),
    )
    assert (full.status_code, full.json()["error"]) == (403, "full_sync_requires_admin")
    assert "admin" in full.json()["detail"]
    assert (await sync(client, member_key, org_id, **one))["success"]
    assert (await sync(client, admin_key, org_id, incremental="false", **one))["success"]


@pytest.mark.usefixtures("fresh_sandbox")
async def test_an_organisation_may_start_only_so_many_syncs_per_window(
    client: httpx.AsyncClient,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connections = await connected_org(client, session_factory)
    other_org, _, other_key = await create_org_with_user(session_factory, name="Other")
    limit, window = settings.sync_rate_limit_per_org, settings.sync_rate_limit_window_seconds
    settings.sync_rate_limit_per_org, settings.sync_rate_limit_window_seconds = 2, 600
    try:
        one = {"connection_id": str(connections[0].id)}
        await sync(client, key, org_id, "accounts", **one)
        await sync(client, key, org_id, **one)
        refused = await client.post(
            "/external-accounting/accounts/sync",
            params={"org_id": str(org_id), **one},
            headers=bearer(key),
        )
        again = await client.post(
            "/external-accounting/invoices/sync",
            params={"org_id": str(org_id), **one},
            headers=bearer(key),
        )
        # The limit is per organisation: another one is not held back.
        other = await client.post(
            "/external-accounting/accounts/sync",
            params={"org_id": str(other_org.id)},
            headers=bearer(other_key),
        )
    finally:
        settings.sync_rate_limit_per_org, settings.sync_rate_limit_window_seconds = limit, window
    for response in (refused, again):
        assert response.status_code == 429, response.text
        assert response.json()["error"] == "sync_rate_limited"
        retry_after = int(response.headers["retry-after"])
        assert 0 < retry_after <= 600
        assert response.json()["retry_after_seconds"] == retry_after
    assert (other.status_code, other.json()["error"]) == (409, "no_active_connection")
