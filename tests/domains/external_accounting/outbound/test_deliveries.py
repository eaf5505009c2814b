"""Outbound webhooks delivered for real: a receiver (uvicorn in a thread) gets `sync.finished`
after a sync against the sandbox, signed per Standard Webhooks; a 500 is retried; the delivery
log shows every attempt; a disconnect sends `connection.disconnected`, a refresh token Xero
refuses `connection.needs_reauth`."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from src.core.crypto import TokenCipher
from src.core.database import utcnow
from src.core.settings import Settings
from src.domains.external_accounting.connections.models import OAuthGrant
from src.domains.external_accounting.outbound.models import WebhookDelivery
from src.domains.external_accounting.xero.auth.keep_alive import keep_alive_pass
from src.xero_sandbox.server import RunningSandbox
from tests.factories import bearer
from tests.fixtures import background_service, connected_org, fast_jobs, sync, wait_for
from tests.xero_sandbox.webhook_receiver import Received, WebhookReceiver

URL = "/external-accounting/webhook-endpoints"


def outbound_settings(settings: Settings) -> Settings:
    """Deliveries looked for every second, retried after a tenth of one."""
    return fast_jobs(
        settings,
        outbound_webhook_tick_seconds=1,
        outbound_webhook_retry_base_seconds=0.1,
        outbound_webhook_retry_max_seconds=0.2,
    )


async def register(
    client: httpx.AsyncClient, key: str, org_id: object, url: str, *events: str
) -> dict[str, Any]:
    response = await client.post(
        URL,
        params={"org_id": str(org_id)},
        json={"url": url, "event_types": list(events)},
        headers=bearer(key),
    )
    assert response.status_code == 201, response.text
    endpoint: dict[str, Any] = response.json()
    return endpoint


async def arrivals(receiver: WebhookReceiver, count: int) -> list[Received]:
    """The first `count` requests the receiver got, waiting without blocking the loop (the
    in-process worker that delivers runs on it)."""

    async def arrived() -> bool:
        return len(receiver.received) >= count

    await wait_for(arrived, timeout=20)
    return receiver.received[:count]


def verified(secret: str, received: Received) -> dict[str, Any]:
    """The payload, once `standardwebhooks` accepts its signature (raises otherwise)."""
    payload: dict[str, Any] = Webhook(secret).verify(received.body, received.headers)
    return payload


async def delivery_log(
    client: httpx.AsyncClient, key: str, org_id: object, endpoint_id: str
) -> list[dict[str, Any]]:
    response = await client.get(
        f"{URL}/{endpoint_id}/deliveries", params={"org_id": str(org_id)}, headers=bearer(key)
    )
    assert response.status_code == 200, response.text
    deliveries: list[dict[str, Any]] = response.json()["deliveries"]
    return deliveries


async def test_sync_finished_is_delivered_signed_and_retried_after_a_500(
    fresh_sandbox: RunningSandbox,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with background_service(outbound_settings(settings)) as (_, client):
        org_id, key, connections = await connected_org(client, session_factory)
        with WebhookReceiver() as receiver:
            receiver.statuses = [500]  # the first attempt fails, the retry is answered 200
            endpoint = await register(
                client, key, org_id, receiver.url, "sync.finished", "sync.failed"
            )
            result = await sync(client, key, org_id, "accounts")
            assert result["success"] is True, result
            # One POST per connection's run, and the retry of the one answered 500.
            arrived = await arrivals(receiver, len(connections) + 1)
            log: list[dict[str, Any]] = []

            async def settled() -> bool:
                nonlocal log
                log = await delivery_log(client, key, org_id, endpoint["id"])
                return len(log) == len(connections) and all(d["status"] == "delivered" for d in log)

            await wait_for(settled, timeout=20)

    secret = endpoint["secret"]
    payloads = [verified(secret, received) for received in arrived]
    runs = {c["sync_run_id"] for c in result["connections"]}
    assert {p["data"]["sync_run_id"] for p in payloads} == runs
    for payload in payloads:
        assert payload["type"] == "sync.finished"
        assert payload["data"]["object_type"] == "accounts"
        assert payload["data"]["status"] == "success"
        assert payload["data"]["error"] is None
        assert payload["data"]["count"] >= 1
    # The delivery that met the 500 was POSTed again under the same webhook-id; the log shows
    # both of its attempts, and one for each other delivery.
    assert len(receiver.received) == len(connections) + 1
    ids = [received.headers["webhook-id"] for received in arrived]
    retried = arrived[0].headers["webhook-id"]
    assert ids.count(retried) == 2
    assert sorted(set(ids)) == sorted(str(d["id"]) for d in log)
    for delivery in log:
        attempts = [(a["attempt"], a["status_code"], a["error"]) for a in delivery["attempt_log"]]
        if delivery["id"] == retried:
            assert attempts == [(1, 500, "HTTP 500"), (2, 200, None)]
            assert delivery["attempts"] == 2
        else:
            assert attempts == [(1, 200, None)]
        assert delivery["event_type"] == "sync.finished"
        assert delivery["delivered_at"] is not None
    # A tampered body is refused by the same verification.
    with pytest.raises(Exception, match="signature"):
        Webhook(secret).verify(arrived[0].body + b" ", arrived[0].headers)
    assert secret not in caplog.text
    async with session_factory() as session:
        stored = (await session.execute(select(WebhookDelivery))).scalars().all()
    assert all(secret not in str(d.payload) for d in stored)


async def test_connection_disconnected_is_delivered(
    fresh_sandbox: RunningSandbox,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    async with background_service(outbound_settings(settings)) as (_, client):
        org_id, key, connections = await connected_org(client, session_factory)
        with WebhookReceiver() as receiver:
            endpoint = await register(client, key, org_id, receiver.url, "connection.disconnected")
            gone = connections[0]
            response = await client.delete(
                f"/external-accounting/connections/{gone.id}",
                params={"org_id": str(org_id)},
                headers=bearer(key),
            )
            assert response.status_code == 204, response.text
            (received,) = await arrivals(receiver, 1)
            # A sync is not an event this endpoint asked for.
            await sync(client, key, org_id, "accounts")
    payload = verified(endpoint["secret"], received)
    assert payload["type"] == "connection.disconnected"
    assert payload["data"]["connection_id"] == str(gone.id)
    assert payload["data"]["tenant_id"] == gone.tenant_id
    assert len(receiver.received) == 1


async def test_connection_needs_reauth_is_delivered_when_xero_refuses_the_refresh_token(
    fresh_sandbox: RunningSandbox,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    fast = outbound_settings(settings)
    async with background_service(fast) as (app, client):
        org_id, key, connections = await connected_org(client, session_factory)
        async with session_factory() as session:
            grant = (await session.execute(select(OAuthGrant))).scalar_one()
        refresh_token = TokenCipher.from_settings(settings).decrypt(
            grant.refresh_token_encrypted or ""
        )
        with WebhookReceiver() as receiver:
            endpoint = await register(client, key, org_id, receiver.url, "connection.needs_reauth")
            # The customer revoked our access at Xero: the next refresh is refused.
            async with httpx.AsyncClient() as xero:
                response = await xero.post(
                    f"{fresh_sandbox.base_url}/connect/revocation",
                    data={"token": refresh_token},
                    auth=(settings.xero_client_id, settings.xero_client_secret.get_secret_value()),
                )
            response.raise_for_status()
            later = utcnow() + timedelta(days=settings.token_keepalive_days + 1)
            report = await keep_alive_pass(
                session_factory, app.state.xero_auth_manager, fast, now=later
            )
            assert report.needs_reauth == [str(grant.id)]
            received = await arrivals(receiver, len(connections))
            # A second refusal changes nothing: no second event per connection.
            await keep_alive_pass(session_factory, app.state.xero_auth_manager, fast, now=later)
    payloads = [verified(endpoint["secret"], r) for r in received]
    assert {p["type"] for p in payloads} == {"connection.needs_reauth"}
    assert {p["data"]["connection_id"] for p in payloads} == {str(c.id) for c in connections}
    assert {p["data"]["reason"] for p in payloads} == {"invalid_grant"}
    assert len(receiver.received) == len(connections)
