"""Xero's webhook receiver (issue 13) over real HTTP: the signature is the authentication (401
with an empty body when wrong or missing, 200 with an empty body when right, intent-to-receive
included), a signed but hostile body is a 4xx and never a 5xx, events are stored once each,
events of tenants we do not hold and categories we do not sync cost no work, and with the key
set the default schedule relaxes."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.settings import Settings
from src.domains.external_accounting.xero.webhooks.deps import SIGNATURE_HEADER, signature_of
from src.domains.external_accounting.xero.webhooks.models import EventStatus, WebhookEvent
from tests.factories import bearer
from tests.fixtures import WEBHOOK_KEY as KEY
from tests.fixtures import app_client, connected_org, running_app
from tests.fixtures import post_webhook as post_signed
from tests.fixtures import xero_delivery as delivery
from tests.fixtures import xero_event as event

PREFIXES = ("/external-accounting", "/integrations")


@pytest.fixture
async def webhook_app(settings: Settings, session_factory: object) -> Any:
    async with running_app(settings.model_copy(update={"xero_webhook_key": SecretStr(KEY)})) as app:
        yield app


@pytest.fixture
async def webhook_client(webhook_app: FastAPI) -> Any:
    async with app_client(webhook_app) as client:
        yield client


async def stored_events(session_factory: async_sessionmaker[AsyncSession]) -> list[WebhookEvent]:
    async with session_factory() as session:
        return list((await session.execute(select(WebhookEvent))).scalars())


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_a_wrong_or_missing_signature_is_401_with_an_empty_body(
    webhook_client: httpx.AsyncClient, prefix: str
) -> None:
    body = delivery(event(str(uuid.uuid4()), str(uuid.uuid4())))
    for key in (None, "another-key", ""):
        response = await post_signed(webhook_client, body, key=key, prefix=prefix)
        assert response.status_code == 401, key
        assert response.content == b""
    # Right signature of other bytes (a tampered body).
    response = await webhook_client.post(
        f"{prefix}/xero/webhooks",
        content=body + b" ",
        headers={SIGNATURE_HEADER: signature_of(KEY, body)},
    )
    assert (response.status_code, response.content) == (401, b"")


async def test_without_a_key_every_delivery_is_refused(client: httpx.AsyncClient) -> None:
    """XERO_WEBHOOK_KEY unset: webhooks are off, even a body signed with an empty key fails."""
    body = delivery()
    for key in ("", KEY):
        response = await post_signed(client, body, key=key)
        assert (response.status_code, response.content) == (401, b"")


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_the_intent_to_receive_check_passes(
    webhook_client: httpx.AsyncClient, prefix: str
) -> None:
    """Xero's check: a correctly signed delivery with no events is 200, a wrong one 401."""
    body = delivery()
    ok = await post_signed(webhook_client, body, prefix=prefix)
    assert (ok.status_code, ok.content) == (200, b"")
    wrong = await post_signed(webhook_client, body, key="not-the-key", prefix=prefix)
    assert (wrong.status_code, wrong.content) == (401, b"")


HOSTILE_BODIES = {
    "not json": b"this is not json",
    "empty": b"",
    "a list": b"[]",
    "events not a list": json.dumps({"events": {"a": 1}}).encode(),
    "event not an object": json.dumps({"events": [1, 2]}).encode(),
    "missing fields": json.dumps({"events": [{"resourceId": str(uuid.uuid4())}]}).encode(),
    "resource id not a uuid": delivery(event(str(uuid.uuid4()), "'; DROP TABLE invoices; --")),
    "tenant id not a uuid": delivery(event("\x00tenant", str(uuid.uuid4()))),
    "time not a time": delivery(event(str(uuid.uuid4()), str(uuid.uuid4()), at="yesterday")),
    "time off the calendar in UTC": delivery(
        event(str(uuid.uuid4()), str(uuid.uuid4()), at="0001-01-01T00:00:00+14:00")
    ),
    "deep nesting": b'{"events": [], "entropy": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "deep nesting inside an event": b'{"events": [{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}]}",
    "a number too long": b'{"events": [], "firstEventSequence": ' + b"9" * 5000 + b"}",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_BODIES))
async def test_a_signed_but_malformed_body_is_a_4xx_in_our_error_shape(
    webhook_client: httpx.AsyncClient,
    session_factory: async_sessionmaker[AsyncSession],
    name: str,
) -> None:
    response = await post_signed(webhook_client, HOSTILE_BODIES[name])
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_webhook_payload"
    assert await stored_events(session_factory) == []


async def test_a_huge_body_is_413_before_it_is_read(
    webhook_client: httpx.AsyncClient, settings: Settings
) -> None:
    limit = settings.webhook_max_body_bytes
    body = delivery() + b" " * limit
    response = await post_signed(webhook_client, body)
    assert response.status_code == 413
    assert response.json()["error"] == "webhook_payload_too_large"

    async def chunks() -> Any:  # no Content-Length: refused while streaming
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    streamed = await webhook_client.post(
        "/external-accounting/xero/webhooks",
        content=chunks(),
        headers={SIGNATURE_HEADER: "irrelevant"},
    )
    assert streamed.status_code == 413


async def test_unknown_tenants_and_categories_are_accepted_without_work(
    webhook_client: httpx.AsyncClient,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """A tenant none of our connections holds: 200, nothing stored, nothing queued. A category
    or event type Xero has not documented: ignored, unread."""
    stranger = str(uuid.uuid4())
    body = delivery(
        event(stranger, str(uuid.uuid4())),
        event(stranger, str(uuid.uuid4()), category="CREDITNOTE"),
        event(stranger, str(uuid.uuid4()), category="PAYMENT"),
        event(stranger, str(uuid.uuid4()), event_type="DELETE"),
    )
    response = await post_signed(webhook_client, body)
    assert (response.status_code, response.content) == (200, b"")
    assert await stored_events(session_factory) == []


async def test_events_are_stored_once_and_contacts_are_only_recorded(
    webhook_client: httpx.AsyncClient,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org = await connected_org(webhook_client, session_factory)
    tenant = org.connections[0].tenant_id
    contact = event(tenant, str(uuid.uuid4()), category="CONTACT")
    subscription = event(str(uuid.uuid4()), str(uuid.uuid4()), category="SUBSCRIPTION")
    subscription["tenantType"] = "APPLICATION"
    body = delivery(contact, subscription, contact)  # a duplicate within the delivery too
    for _ in range(3):  # and Xero's retries of the whole delivery
        response = await post_signed(webhook_client, body)
        assert response.status_code == 200
    events = await stored_events(session_factory)
    assert sorted((e.category, e.status, e.connection_id) for e in events) == [
        ("CONTACT", EventStatus.IGNORED.value, org.connections[0].id),
        ("SUBSCRIPTION", EventStatus.IGNORED.value, None),
    ]
    assert all(e.processed_at is not None and e.event_at.tzinfo is not None for e in events)


async def test_with_webhooks_on_the_default_schedule_relaxes(
    webhook_client: httpx.AsyncClient,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """The safety net: 90-minute invoices and 6-hour accounts by default; a connection's own
    schedule still wins."""
    org = await connected_org(webhook_client, session_factory)
    connection = org.connections[0]
    url = f"/external-accounting/connections/{connection.id}/schedule"
    params = {"org_id": str(org.org_id)}
    schedule = (await webhook_client.get(url, params=params, headers=bearer(org.key))).json()
    assert schedule["effective_invoices_every_minutes"] == (
        settings.schedule_invoices_minutes_with_webhooks
    )
    assert schedule["effective_accounts_every_minutes"] == (
        settings.schedule_accounts_minutes_with_webhooks
    )
    own = await webhook_client.put(
        url,
        params=params,
        headers=bearer(org.key),
        json={"enabled": True, "invoices_every_minutes": 20},
    )
    assert own.status_code == 200, own.text
    assert own.json()["effective_invoices_every_minutes"] == 20
    async with session_factory() as session:
        count = (await session.execute(select(func.count()).select_from(WebhookEvent))).scalar()
    assert count == 0
