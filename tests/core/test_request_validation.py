"""Bad input is a 4xx in the one error shape on every route, never a 500: control characters in
any parameter (PostgreSQL refuses NUL in text), timestamps at the edges of the calendar."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import bearer, create_org_with_user

NUL_REQUESTS = [
    ("POST", "/external-accounting/invoices/sync", {"tenant_id": "\x00"}),
    ("POST", "/integrations/accounts/sync", {"tenant_id": "tenant\x00"}),
    ("POST", "/external-accounting/invoices/sync", {"invoice_types[]": "ACCREC\x00"}),
    ("GET", "/external-accounting/invoices", {"contact_id": "\x00"}),
    ("GET", "/external-accounting/invoices", {"cursor": "\x00"}),
    ("GET", "/external-accounting/invoices", {"status": "PAID\x00"}),
    ("GET", "/external-accounting/accounts", {"type": "\x00BANK"}),
    ("GET", "/external-accounting/xero/callback", {"state": "abc.\x00", "code": "x"}),
    ("GET", "/external-accounting/xero/callback", {"state": "abc", "error": "\x00"}),
    ("GET", "/external-accounting/invoices", {"unknown_parameter": "\x00"}),
    ("GET", "/external-accounting/invoices", {"tab\tin_a_name": "x"}),
]


@pytest.mark.parametrize(("method", "path", "params"), NUL_REQUESTS)
async def test_a_control_character_in_any_parameter_is_a_422(
    client: httpx.AsyncClient,
    session_factory: async_sessionmaker[AsyncSession],
    method: str,
    path: str,
    params: dict[str, str],
) -> None:
    organization, _, key = await create_org_with_user(session_factory)
    response = await client.request(
        method, path, params={"org_id": str(organization.id), **params}, headers=bearer(key)
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_parameter"
    assert "control character" in body["detail"]
    assert "\x00" not in response.text


@pytest.mark.parametrize(
    "updated_since",
    [
        "0001-01-01T00:00:00+14:00",  # year 0 in UTC
        "9999-12-31T23:59:59-14:00",  # year 10000 in UTC
        "2025-01-01T00:00:00",  # no timezone: ambiguous
    ],
)
async def test_timestamps_out_of_range_or_naive_are_a_422(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession], updated_since: str
) -> None:
    organization, _, key = await create_org_with_user(session_factory)
    response = await client.get(
        "/external-accounting/invoices",
        params={"org_id": str(organization.id), "updated_since": updated_since},
        headers=bearer(key),
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_parameter"
    assert response.json()["errors"][0]["loc"] == ["query", "updated_since"]


@pytest.mark.parametrize(
    "updated_since", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2025-01-01T10:00:00+14:00"]
)
async def test_timestamps_at_the_edges_that_exist_in_utc_are_accepted(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession], updated_since: str
) -> None:
    organization, _, key = await create_org_with_user(session_factory)
    response = await client.get(
        "/external-accounting/invoices",
        params={"org_id": str(organization.id), "updated_since": updated_since},
        headers=bearer(key),
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_cursor": None}
