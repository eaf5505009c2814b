"""API keys as the access dependencies see them, over HTTP: a key acts for the one organisation
it was issued for, and an expired key says so."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.database import utcnow
from src.domains.external_accounting.connections.models import Connection
from src.domains.organizations.models import ApiKey, Role
from src.domains.organizations.service import OrganizationService
from tests.factories import add_member, bearer, create_org_with_user

CONNECTIONS = "/external-accounting/connections"


async def test_a_key_of_one_organisation_is_refused_on_another_of_its_users(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    acme, ann, acme_key = await create_org_with_user(session_factory, Role.ADMIN)
    globex, _, _ = await create_org_with_user(session_factory, Role.OWNER, name="Globex")
    globex_key = await add_member(session_factory, globex, Role.ADMIN, ann.email)
    _, _, outsider_key = await create_org_with_user(session_factory, name="Initech")
    async with session_factory() as session:
        globex_connection = Connection(organization_id=globex.id, tenant_id="tenant-globex")
        session.add(globex_connection)
        await session.commit()

    own = await client.get(CONNECTIONS, params={"org_id": str(acme.id)}, headers=bearer(acme_key))
    assert own.status_code == 200, own.text
    assert (
        await client.get(CONNECTIONS, params={"org_id": str(globex.id)}, headers=bearer(globex_key))
    ).json()[0]["id"] == str(globex_connection.id)

    # Ann is an admin of Globex, but this key was issued for Acme: a non-member's answer.
    crossed = await client.get(
        CONNECTIONS, params={"org_id": str(globex.id)}, headers=bearer(acme_key)
    )
    outsider = await client.get(
        CONNECTIONS, params={"org_id": str(globex.id)}, headers=bearer(outsider_key)
    )
    assert (crossed.status_code, crossed.json()) == (outsider.status_code, outsider.json())
    assert (crossed.status_code, crossed.json()["error"]) == (403, "not_a_member")

    # Where the API hides that a connection exists, it hides it from the Acme key too.
    schedule = f"{CONNECTIONS}/{globex_connection.id}/schedule"
    hidden = await client.delete(f"{CONNECTIONS}/{globex_connection.id}", headers=bearer(acme_key))
    assert (hidden.status_code, hidden.json()["error"]) == (404, "connection_not_found")
    put = await client.put(
        schedule, params={"org_id": str(globex.id)}, headers=bearer(acme_key), json={}
    )
    assert (put.status_code, put.json()["error"]) == (403, "not_a_member")


async def test_an_expired_key_is_refused_saying_it_expired(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    acme, ann, _ = await create_org_with_user(session_factory, Role.ADMIN)
    async with session_factory() as session:
        issued = await OrganizationService(session).issue_key(ann, acme.id, expires_in_days=1)
        await session.commit()
    params = {"org_id": str(acme.id)}
    assert (await client.get(CONNECTIONS, params=params, headers=bearer(issued.key))).is_success

    async with session_factory() as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.prefix == issued.prefix)
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
        await session.commit()
    expired = await client.get(CONNECTIONS, params=params, headers=bearer(issued.key))
    assert expired.status_code == 401
    assert expired.json()["error"] == "unauthenticated"
    assert expired.json()["detail"].startswith("The API key expired at ")
