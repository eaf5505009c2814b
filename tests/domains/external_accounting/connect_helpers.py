"""Drive the real connect flow: our API → the sandbox's consent → our callback."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from tests.factories import bearer


async def start_connect(client: httpx.AsyncClient, key: str, org_id: object) -> str:
    """Our connect endpoint's redirect to Xero's authorize URL."""
    response = await client.get(
        "/external-accounting/xero/connect", params={"org_id": str(org_id)}, headers=bearer(key)
    )
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def approve(authorize_url: str, tenant_ids: list[str] | None = None) -> dict[str, str]:
    """Where Xero sends the browser back: auto-approve, or the consent form for some tenants."""
    async with httpx.AsyncClient() as browser:
        page = await browser.get(authorize_url)
        if tenant_ids is not None:
            assert page.status_code == 200
            fields = {k: v[0] for k, v in parse_qs(urlparse(authorize_url).query).items()}
            base = authorize_url.split("/identity/")[0]
            page = await browser.post(
                f"{base}/identity/connect/authorize/consent",
                data={**fields, "tenant_id": tenant_ids, "decision": "allow"},
            )
        assert page.status_code == 302, page.text
        query = parse_qs(urlparse(page.headers["location"]).query)
    return {k: v[0] for k, v in query.items()}


async def callback(
    client: httpx.AsyncClient, params: dict[str, str], **headers: str
) -> httpx.Response:
    """Our callback, as the browser would call it."""
    return await client.get("/external-accounting/xero/callback", params=params, headers=headers)


async def connect(
    client: httpx.AsyncClient, key: str, org_id: object, tenant_ids: list[str] | None = None
) -> dict[str, Any]:
    """The whole API flow (the callback carries the starting user's key); returns its JSON."""
    response = await connect_response(client, key, org_id, tenant_ids)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def connect_response(
    client: httpx.AsyncClient, key: str, org_id: object, tenant_ids: list[str] | None = None
) -> httpx.Response:
    """The whole API flow; returns the callback's response, whatever it is."""
    params = await approve(await start_connect(client, key, org_id), tenant_ids)
    return await callback(client, params, **bearer(key))


async def create_link(client: httpx.AsyncClient, key: str, org_id: object) -> dict[str, Any]:
    """A connect link (`POST /connect-sessions`), as an admin's API call."""
    response = await client.post(
        "/external-accounting/connect-sessions", params={"org_id": str(org_id)}, headers=bearer(key)
    )
    assert response.status_code == 201, response.text
    link: dict[str, Any] = response.json()
    return link


async def open_link(browser: httpx.AsyncClient, url: str) -> str:
    """A browser opening a connect link: it keeps our cookie and is sent to Xero's consent."""
    response = await browser.get(url)
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def browser_connect(
    browser: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    key: str,
    org_id: object,
    tenant_ids: list[str] | None = None,
) -> httpx.Response:
    """The whole browser flow: an admin's link, opened and consented in `browser`."""
    link = await create_link(admin, key, org_id)
    params = await approve(await open_link(browser, link["url"]), tenant_ids)
    return await callback(browser, params)
