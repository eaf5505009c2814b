"""GET/PUT /connections/{id}/schedule: members read, admins replace, another organisation's
connection is a 404, and a refused body is a 422 in the one error shape that says why."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.settings import Settings
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.schedules.service import ScheduleService
from src.domains.organizations.models import Organization, Role
from tests.factories import add_member, bearer, create_org_with_user


async def _org_with_connection(
    session_factory: async_sessionmaker[AsyncSession], name: str
) -> tuple[Organization, str, uuid.UUID]:
    organization, _, key = await create_org_with_user(session_factory, name=name)
    async with session_factory() as session:
        connection = Connection(
            organization_id=organization.id, tenant_id=str(uuid.uuid4()), tenant_name=name
        )
        session.add(connection)
        await session.commit()
        return organization, key, connection.id


def _url(prefix: str, connection_id: object) -> str:
    return f"{prefix}/connections/{connection_id}/schedule"


@pytest.mark.parametrize("prefix", ["/external-accounting", "/integrations"])
async def test_members_read_and_admins_replace_a_schedule(
    app: FastAPI,
    client: httpx.AsyncClient,
    session_factory: async_sessionmaker[AsyncSession],
    prefix: str,
) -> None:
    organization, admin, connection_id = await _org_with_connection(session_factory, "Acme")
    member = await add_member(session_factory, organization, Role.MEMBER, "m@acme.test")
    params = {"org_id": str(organization.id)}
    url = _url(prefix, connection_id)

    default = await client.get(url, params=params, headers=bearer(member))
    assert default.status_code == 200, default.text
    assert default.json() == {
        "connection_id": str(connection_id),
        "enabled": True,
        "invoices_every_minutes": None,
        "accounts_every_minutes": None,
        "effective_invoices_every_minutes": 15,
        "effective_accounts_every_minutes": 60,
        "day_limit_remaining": None,
        "day_limit_observed_at": None,
        # The suite's deployment queues no scheduled syncs (tests.fixtures.sandbox_settings).
        "scheduled_syncs": False,
    }

    body = {"invoices_every_minutes": 5, "accounts_every_minutes": None, "enabled": True}
    put = await client.put(url, params=params, json=body, headers=bearer(admin))
    assert put.status_code == 200, put.text
    assert put.json()["invoices_every_minutes"] == 5
    assert put.json()["effective_invoices_every_minutes"] == 5
    assert put.json()["effective_accounts_every_minutes"] == 60
    read = await client.get(url, params=params, headers=bearer(member))
    assert read.json() == put.json()

    # Replaced whole: fields left out take their defaults.
    disabled = await client.put(url, params=params, json={"enabled": False}, headers=bearer(admin))
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["enabled"] is False
    assert disabled.json()["invoices_every_minutes"] is None
    assert disabled.json()["effective_invoices_every_minutes"] == 15


@pytest.mark.parametrize("scheduled_syncs", [True, False])
async def test_a_schedule_says_whether_this_deployment_follows_schedules(
    session_factory: async_sessionmaker[AsyncSession], settings: Settings, scheduled_syncs: bool
) -> None:
    """With SCHEDULED_SYNCS off the schedule is kept but not followed; the console shows which."""
    _, _, connection_id = await _org_with_connection(session_factory, "Acme")
    deployment = settings.model_copy(update={"scheduled_syncs": scheduled_syncs})
    async with session_factory() as session:
        connection = await session.get(Connection, connection_id)
        assert connection is not None
        schedule = await ScheduleService(session, deployment).get(connection)
    assert schedule.scheduled_syncs is scheduled_syncs
    assert schedule.enabled


async def test_a_member_may_not_replace_a_schedule(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    organization, _, connection_id = await _org_with_connection(session_factory, "Acme")
    member = await add_member(session_factory, organization, Role.MEMBER, "m@acme.test")
    response = await client.put(
        _url("/external-accounting", connection_id),
        params={"org_id": str(organization.id)},
        json={"invoices_every_minutes": 1},
        headers=bearer(member),
    )
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "insufficient_role"


async def test_another_organisations_connection_is_not_found(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    ours, key, _ = await _org_with_connection(session_factory, "Ours")
    theirs, _, their_connection = await _org_with_connection(session_factory, "Theirs")
    url = _url("/external-accounting", their_connection)
    for method, body in (("GET", None), ("PUT", {"enabled": False})):
        # Asked for as our organisation's: 404, nothing learnt about it.
        response = await client.request(
            method, url, params={"org_id": str(ours.id)}, headers=bearer(key), json=body
        )
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "connection_not_found"
        # Asked for as theirs: we are not a member.
        response = await client.request(
            method, url, params={"org_id": str(theirs.id)}, headers=bearer(key), json=body
        )
        assert response.status_code == 403, response.text
        assert response.json()["error"] == "not_a_member"
    unknown = await client.get(
        _url("/external-accounting", uuid.uuid4()),
        params={"org_id": str(ours.id)},
        headers=bearer(key),
    )
    assert unknown.status_code == 404
    no_key = await client.get(url, params={"org_id": str(ours.id)})
    assert no_key.status_code == 401
    assert no_key.json()["error"] == "unauthenticated"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"invoices_every_minutes": 0}, "invoices_every_minutes"),
        ({"invoices_every_minutes": 10_081}, "invoices_every_minutes"),
        ({"accounts_every_minutes": -5}, "accounts_every_minutes"),
        ({"invoices_every_minutes": "5"}, "invoices_every_minutes"),
        ({"invoices_every_minutes": 5.5}, "invoices_every_minutes"),
        ({"enabled": "yes"}, "enabled"),
        ({"enabled": None}, "enabled"),
        ({"every_minutes": 5}, "every_minutes"),
        ([], "valid dictionary"),
    ],
)
async def test_a_refused_schedule_says_which_field_and_why(
    client: httpx.AsyncClient,
    session_factory: async_sessionmaker[AsyncSession],
    body: Any,
    where: str,
) -> None:
    organization, key, connection_id = await _org_with_connection(session_factory, "Acme")
    url = _url("/external-accounting", connection_id)
    params = {"org_id": str(organization.id)}
    response = await client.put(url, params=params, json=body, headers=bearer(key))
    assert response.status_code == 422, response.text
    refused = response.json()
    assert refused["error"] == "invalid_parameter"
    assert where in refused["detail"]
    assert refused["errors"][0]["loc"][0] == "body"
    # Nothing was stored.
    read = await client.get(url, params=params, headers=bearer(key))
    assert read.json()["invoices_every_minutes"] is None
    assert read.json()["enabled"] is True


async def test_no_body_is_a_422(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    organization, key, connection_id = await _org_with_connection(session_factory, "Acme")
    response = await client.put(
        _url("/external-accounting", connection_id),
        params={"org_id": str(organization.id)},
        headers=bearer(key),
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_parameter"


def test_the_schedule_is_in_the_openapi_document(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    for prefix in ("/external-accounting", "/integrations"):
        operations = paths[f"{prefix}/connections/{{connection_id}}/schedule"]
        assert set(operations) == {"get", "put"}
        assert set(operations["get"]["responses"]) == {"200", "401", "403", "404", "422"}
        assert set(operations["put"]["responses"]) == {"200", "401", "403", "404", "422"}
        body = operations["put"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/ScheduleIn"}
    schema = app.openapi()["components"]["schemas"]["ScheduleIn"]
    assert schema["additionalProperties"] is False
    minutes = schema["properties"]["invoices_every_minutes"]["anyOf"][0]
    assert (minutes["minimum"], minutes["maximum"]) == (1, 10_080)
