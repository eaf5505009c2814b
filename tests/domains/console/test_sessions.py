"""Console sign-ins over the app's real routes and database (no browser): the session row, the
cookie's flags, CSRF on every form, and what ends a session (signing out, the key's revocation
or expiry, the session's own expiry)."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.database import utcnow
from src.domains.console.models import ConsoleSession
from src.domains.organizations.models import ApiKey, Role
from src.domains.organizations.service import OrganizationService
from tests.factories import altered, create_org_with_user

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    form = await client.get("/console/sign-in")
    token = CSRF.search(form.text)
    assert token is not None
    return await client.post("/console/sign-in", data={"api_key": key, "csrf_token": token[1]})


async def csrf_of(client: httpx.AsyncClient) -> str:
    page = await client.get("/console/connections")
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found is not None
    return found[1]


async def sessions(factory: async_sessionmaker[AsyncSession]) -> int:
    async with factory() as session:
        return (
            await session.execute(select(func.count()).select_from(ConsoleSession))
        ).scalar_one()


async def test_signing_in_sets_an_httponly_session_cookie_and_stores_only_hashes(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    _, _, key = await create_org_with_user(session_factory, Role.ADMIN)
    assert (await client.get("/console/connections")).status_code == 303  # to the sign-in page
    response = await sign_in(client, key)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/connections"
    cookie = response.headers["set-cookie"]
    assert "ledgersync_console=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test
    token = client.cookies["ledgersync_console"]
    async with session_factory() as session:
        row = (await session.execute(select(ConsoleSession))).scalar_one()
    assert token not in (row.token_hash, row.csrf_token_hash)
    assert key not in (row.token_hash, row.csrf_token_hash)
    page = await client.get("/console/connections")
    assert page.status_code == 200
    assert key not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


async def test_a_wrong_key_or_a_forged_sign_in_form_opens_nothing(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    _, _, key = await create_org_with_user(session_factory, Role.ADMIN)
    wrong = await sign_in(client, altered(key))
    assert wrong.status_code == 401
    assert "The API key is not valid." in wrong.text
    assert "ledgersync_console" not in client.cookies
    # A form posted from elsewhere has no sign-in cookie to match: refused, even with a good key.
    client.cookies.set("ledgersync_console_sign_in", "y" * 43, path="/console/sign-in")
    forged = await client.post("/console/sign-in", data={"api_key": key, "csrf_token": "x" * 43})
    assert forged.status_code == 403
    assert await sessions(session_factory) == 0


async def test_every_form_needs_the_sessions_csrf_token(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    _, _, key = await create_org_with_user(session_factory, Role.ADMIN)
    await sign_in(client, key)
    csrf = await csrf_of(client)
    for path in (
        "/console/connect",
        "/console/sign-out",
        f"/console/connections/{uuid.uuid4()}/sync",
    ):
        missing = await client.post(path)
        assert missing.status_code == 403, path
        assert "csrf_refused" in missing.text
        wrong = await client.post(path, data={"csrf_token": altered(csrf)})
        assert wrong.status_code == 403, path
    # The header htmx-style callers send is accepted as well as the form field.
    other = await client.post(
        f"/console/connections/{uuid.uuid4()}/sync", headers={"X-CSRF-Token": csrf}
    )
    assert other.status_code == 404  # past the CSRF check: no such connection here
    assert await sessions(session_factory) == 1


async def test_signing_out_ends_the_session_for_its_cookie_too(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    _, _, key = await create_org_with_user(session_factory, Role.ADMIN)
    await sign_in(client, key)
    token = client.cookies["ledgersync_console"]
    out = await client.post("/console/sign-out", data={"csrf_token": await csrf_of(client)})
    assert out.status_code == 303
    assert out.headers["location"] == "/console/sign-in"
    assert await sessions(session_factory) == 0
    client.cookies.set("ledgersync_console", token, path="/console")
    assert (await client.get("/console/connections")).status_code == 303


async def test_revoking_the_key_ends_its_sessions(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    _, _, key = await create_org_with_user(session_factory, Role.ADMIN)
    await sign_in(client, key)
    assert (await client.get("/console/connections")).status_code == 200
    async with session_factory() as session:
        assert await OrganizationService(session).revoke_key(key)
        await session.commit()
    assert (await client.get("/console/connections")).status_code == 303
    assert await sessions(session_factory) == 0


async def test_an_expired_key_or_session_ends_it(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    _, _, key = await create_org_with_user(session_factory, Role.MEMBER)
    await sign_in(client, key)
    async with session_factory() as session:
        await session.execute(update(ApiKey).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()
    assert (await client.get("/console/runs")).status_code == 303
    assert await sessions(session_factory) == 0

    _, _, other = await create_org_with_user(session_factory, Role.MEMBER, name="Beta")
    await sign_in(client, other)
    async with session_factory() as session:
        await session.execute(
            update(ConsoleSession).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    assert (await client.get("/console/runs")).status_code == 303
    assert await sessions(session_factory) == 0


async def test_a_member_is_refused_what_only_admins_may_do(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    _, _, key = await create_org_with_user(session_factory, Role.MEMBER)
    await sign_in(client, key)
    csrf = await csrf_of(client)
    page = (await client.get("/console/connections")).text
    assert "Connect Xero" not in page
    assert "/console/webhooks" not in page
    for path in ("/console/connect", f"/console/connections/{uuid.uuid4()}/disconnect"):
        refused = await client.post(path, data={"csrf_token": csrf})
        assert refused.status_code == 403, path
        assert "insufficient_role" in refused.text
    assert (await client.get("/console/webhooks")).status_code == 403


async def test_the_cookie_is_secure_over_https(
    app: object, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    _, _, key = await create_org_with_user(session_factory, Role.ADMIN)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        response = await sign_in(client, key)
    assert response.status_code == 303
    assert "Secure" in response.headers["set-cookie"]


async def test_a_malformed_address_or_an_unknown_record_is_a_page_not_json(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    _, _, key = await create_org_with_user(session_factory, Role.MEMBER)
    await sign_in(client, key)
    malformed = await client.get("/console/runs/not-a-uuid")
    assert malformed.status_code == 422
    assert malformed.headers["content-type"].startswith("text/html")
    assert "invalid_parameter" in malformed.text
    unknown = await client.get(f"/console/invoices/{uuid.uuid4()}")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("text/html")
    assert "does not exist" in unknown.text
