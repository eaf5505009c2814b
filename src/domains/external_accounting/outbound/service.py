"""Outbound webhooks: registering endpoints (the secret answered once, stored encrypted), writing
the outbox where something happens (`emit`, in the caller's transaction), and delivering it
(`WebhookSender`: one signed POST per attempt, backoff between attempts, every attempt logged).
Signatures follow the Standard Webhooks specification: headers `webhook-id` (the delivery's id,
the same on every attempt), `webhook-timestamp` and `webhook-signature`."""

from __future__ import annotations

import base64
import logging
import random
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from src.core import metrics
from src.core.crypto import TokenCipher
from src.core.database import json_dumps, new_id, utcnow
from src.core.http import capped_backoff
from src.core.settings import Settings
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.ledger.models import LedgerChange
from src.domains.external_accounting.ledger.repository import LedgerRepository
from src.domains.external_accounting.ledger.service import FeedPosition, encode_feed_cursor
from src.domains.external_accounting.outbound.exceptions import (
    InvalidWebhookUrl,
    WebhookEndpointNotFound,
)
from src.domains.external_accounting.outbound.models import (
    CHANGE_EVENTS,
    DeliveryStatus,
    EventType,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookEndpoint,
)
from src.domains.external_accounting.outbound.repository import OutboundRepository
from src.domains.external_accounting.outbound.schemas import (
    DeliveryAttemptOut,
    DeliveryLog,
    DeliveryOut,
    WebhookEndpointIn,
)

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
# 24 random bytes: the secret size Standard Webhooks' own libraries generate.
SECRET_BYTES = 24
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def new_secret() -> str:
    """A fresh signing secret in the `whsec_<base64>` form every Standard Webhooks library reads."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def check_url(url: str, settings: Settings) -> str:
    """The URL, if events may be sent there: https, or http to this machine (or anywhere when
    OUTBOUND_WEBHOOK_ALLOW_HTTP), with a host and no credentials in it."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise InvalidWebhookUrl("The webhook URL is not a valid URL.", parameter="url") from None
    if not parsed.host:
        raise InvalidWebhookUrl("The webhook URL has no host.", parameter="url")
    if parsed.userinfo:
        raise InvalidWebhookUrl(
            "The webhook URL must not carry a user name or password.", parameter="url"
        )
    if parsed.scheme == "https":
        return url
    if parsed.scheme == "http" and (
        parsed.host in LOCAL_HOSTS or settings.outbound_webhook_allow_http
    ):
        return url
    raise InvalidWebhookUrl(
        "The webhook URL must use https (http only to localhost).", parameter="url"
    )


class WebhookEndpointService:
    """An organisation's endpoints and their delivery logs."""

    def __init__(self, session: AsyncSession, settings: Settings, cipher: TokenCipher) -> None:
        self.settings = settings
        self.cipher = cipher
        self.repository = OutboundRepository(session)

    async def create(
        self, organization_id: uuid.UUID, request: WebhookEndpointIn
    ) -> tuple[WebhookEndpoint, str]:
        """Register an endpoint; it and its signing secret in plaintext (the only time it is
        shown: what is stored is its ciphertext)."""
        url = check_url(request.url, self.settings)
        if _hears_changes(request.event_types) and not any(
            _hears_changes(e.event_types) for e in await self.repository.endpoints(organization_id)
        ):
            await self._announce_from_now(organization_id)
        secret = new_secret()
        endpoint = WebhookEndpoint(
            organization_id=organization_id,
            url=url,
            event_types=sorted({str(event) for event in request.event_types}),
            secret_ciphertext=self.cipher.encrypt(secret),
            created_at=utcnow(),
        )
        await self.repository.add_endpoint(endpoint)
        return endpoint, secret

    async def _announce_from_now(self, organization_id: uuid.UUID) -> None:
        """The organisation's first endpoint for change events hears of changes from now on,
        not of its whole history: each connection's announcement cursor moves to the feed's
        present position (below the commit horizon, so a change being written now still comes)."""
        ledger = LedgerRepository(self.repository.session)
        # Every position read before the first write: once this transaction has an id, on
        # PostgreSQL it may count as running in its own horizon and read the later ones short.
        positions = {
            connection.id: await ledger.latest_position(organization_id, connection.id)
            for connection in await self.repository.connections_of([organization_id])
        }
        for connection_id, position in positions.items():
            await self.repository.set_change_cursor(connection_id, position)

    async def list(self, organization_id: uuid.UUID) -> list[WebhookEndpoint]:
        """The organisation's endpoints, oldest first."""
        return await self.repository.endpoints(organization_id)

    async def get(self, organization_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint:
        """The endpoint, if it is the organisation's (another's is the same 404 as none)."""
        endpoint = await self.repository.endpoint(organization_id, endpoint_id)
        if endpoint is None:
            raise WebhookEndpointNotFound(f"Webhook endpoint {endpoint_id} does not exist.")
        return endpoint

    async def delete(self, organization_id: uuid.UUID, endpoint_id: uuid.UUID) -> None:
        """Remove the endpoint: nothing more is sent to it, its delivery log goes with it."""
        if not await self.repository.delete_endpoint(organization_id, endpoint_id):
            raise WebhookEndpointNotFound(f"Webhook endpoint {endpoint_id} does not exist.")

    async def delivery_log(
        self, organization_id: uuid.UUID, endpoint_id: uuid.UUID, limit: int
    ) -> DeliveryLog:
        """The endpoint's latest `limit` deliveries with every attempt of each."""
        endpoint = await self.get(organization_id, endpoint_id)
        deliveries = await self.repository.deliveries(endpoint.id, limit)
        attempts = await self.repository.attempts([d.id for d in deliveries])
        return DeliveryLog(
            endpoint_id=endpoint.id,
            deliveries=[
                DeliveryOut(
                    id=delivery.id,
                    event_type=delivery.event_type,
                    status=delivery.status,
                    attempts=delivery.attempts,
                    next_attempt_at=delivery.next_attempt_at
                    if delivery.status == DeliveryStatus.PENDING
                    else None,
                    created_at=delivery.created_at,
                    delivered_at=delivery.delivered_at,
                    attempt_log=[
                        DeliveryAttemptOut.model_validate(a) for a in attempts[delivery.id]
                    ],
                )
                for delivery in deliveries
            ],
        )


async def emit(
    session: AsyncSession,
    organization_id: uuid.UUID,
    event_type: EventType,
    data: dict[str, Any],
) -> int:
    """Owe `event_type` to every endpoint of the organisation that subscribed to it: one outbox
    row each, in the caller's transaction (so the event exists exactly when what it reports
    was committed). The dispatcher's next tick queues their delivery. How many were owed."""
    repository = OutboundRepository(session)
    deliveries = owed(await repository.endpoints(organization_id), event_type, data)
    if deliveries:
        await repository.add_deliveries(deliveries)
    return len(deliveries)


def owed(
    endpoints: Sequence[WebhookEndpoint],
    event_type: EventType,
    data: dict[str, Any],
    now: datetime | None = None,
) -> list[WebhookDelivery]:
    """The outbox rows of one event: one per endpoint subscribed to it, all due `now`."""
    now = now or utcnow()
    payload = {"type": str(event_type), "timestamp": now.isoformat(), "data": data}
    deliveries = [
        WebhookDelivery(
            id=new_id(),
            endpoint_id=endpoint.id,
            event_type=str(event_type),
            payload=payload,
            status=DeliveryStatus.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        for endpoint in endpoints
        if event_type in endpoint.event_types
    ]
    if deliveries:
        metrics.OUTBOUND_EVENTS.labels(str(event_type)).inc()
    return deliveries


def _hears_changes(event_types: Sequence[str]) -> bool:
    return any(event in CHANGE_EVENTS.values() for event in event_types)


class ChangeAnnouncer:
    """Announces committed changes as batched `invoices.changed` / `accounts.changed` events.

    Per connection it reads the change feed past the connection's announcement cursor
    (`webhook_change_cursors`), `outbound_changes_batch_size` changes at a time and only below
    the feed's commit horizon (`LedgerRepository.changes_after`), and in one transaction writes
    one event per object type of those changes (the ids, deduplicated, in feed order, and the
    feed cursor of the last one) and moves the cursor past them, conditionally on it being
    where it was read: a second pass over the same changes (a job run twice, two workers)
    finds the cursor moved and rolls back, so nothing is announced twice.

    It runs from a job (`outbound.announce_changes`, every OUTBOUND_WEBHOOK_TICK_SECONDS), not
    in the write's transaction: there, the change's feed position is not known to be final
    (on PostgreSQL a transaction that started earlier may still commit below it)."""

    def __init__(
        self, session_factory: async_sessionmaker[AsyncSession], settings: Settings
    ) -> None:
        self.session_factory = session_factory
        self.batch_size = settings.outbound_changes_batch_size

    async def announce(self) -> list[uuid.UUID]:
        """One pass over every connection of the organisations with an endpoint subscribed to a
        change event; the ids of the deliveries it wrote, in order."""
        async with self.session_factory() as session:
            repository = OutboundRepository(session)
            organizations = sorted(
                {
                    e.organization_id
                    for e in await repository.all_endpoints()
                    if _hears_changes(e.event_types)
                }
            )
            connections = [
                (c.id, c.organization_id, c.tenant_id)
                for c in await repository.connections_of(organizations)
            ]
        written: list[uuid.UUID] = []
        for connection_id, organization_id, tenant_id in connections:
            written += await self.announce_connection(connection_id, organization_id, tenant_id)
        return written

    async def announce_connection(
        self, connection_id: uuid.UUID, organization_id: uuid.UUID, tenant_id: str
    ) -> list[uuid.UUID]:
        """Announce the connection's changes past its cursor, a batch per transaction, until
        the feed has no more below the horizon (or another pass got there first)."""
        written: list[uuid.UUID] = []
        while True:
            async with self.session_factory() as session:
                repository = OutboundRepository(session)
                endpoints = [
                    e
                    for e in await repository.endpoints(organization_id)
                    if _hears_changes(e.event_types)
                ]
                if not endpoints:
                    return written
                before = await repository.change_cursor(connection_id)
                changes = await LedgerRepository(session).changes_after(
                    organization_id,
                    before or (0, 0),
                    self.batch_size,
                    connection_id=connection_id,
                )
                if not changes:
                    return written
                deliveries = [
                    delivery
                    for event_type, data in _batches(connection_id, tenant_id, changes)
                    for delivery in owed(endpoints, event_type, data)
                ]
                last = changes[-1]
                if not await repository.move_change_cursor(
                    connection_id, before, (last.commit_xid, last.id)
                ):
                    await session.rollback()
                    return written
                if deliveries:
                    await repository.add_deliveries(deliveries)
                await session.commit()
            written += [d.id for d in deliveries]
            if len(changes) < self.batch_size:
                return written


def _batches(
    connection_id: uuid.UUID, tenant_id: str, changes: Sequence[LedgerChange]
) -> list[tuple[EventType, dict[str, Any]]]:
    """One event per record type among `changes` (in feed order): the records' ids, each once,
    and the feed cursor of the type's last change."""
    ids: dict[str, dict[uuid.UUID, None]] = {}
    last: dict[str, FeedPosition] = {}
    for change in changes:
        ids.setdefault(change.record_type, {})[change.record_id] = None
        last[change.record_type] = (change.commit_xid, change.id)
    events: list[tuple[EventType, dict[str, Any]]] = []
    for record_type, its_ids in sorted(ids.items(), key=lambda item: last[item[0]]):
        event_type = CHANGE_EVENTS.get(record_type)
        if event_type is None:
            continue
        events.append(
            (
                event_type,
                {
                    "connection_id": str(connection_id),
                    "tenant_id": tenant_id,
                    "object_type": f"{record_type}s",
                    "ids": [str(record_id) for record_id in its_ids],
                    "cursor": encode_feed_cursor(last[record_type]),
                    "count": len(its_ids),
                },
            )
        )
    return events


def connection_event_data(connection: Connection, **extra: Any) -> dict[str, Any]:
    """What `connection.*` events tell an endpoint about the connection."""
    return {
        "connection_id": str(connection.id),
        "provider": connection.provider,
        "tenant_id": connection.tenant_id,
        "tenant_name": connection.tenant_name,
        **extra,
    }


@dataclass(frozen=True)
class AttemptOutcome:
    """What one attempt made of a delivery: `retry_at` when another attempt is to follow."""

    delivered: bool
    retry_at: datetime | None


class WebhookSender:
    """Delivers outbox rows through the process's one HTTP client."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        settings: Settings,
        cipher: TokenCipher,
    ) -> None:
        self.session_factory = session_factory
        self.http = http
        self.settings = settings
        self.cipher = cipher

    async def due(self, limit: int = 500) -> list[uuid.UUID]:
        """The deliveries whose next attempt is due now."""
        async with self.session_factory() as session:
            return await OutboundRepository(session).due_delivery_ids(utcnow(), limit)

    def backoff(self, attempt: int) -> float:
        """Seconds before the attempt after attempt number `attempt`: capped doubling plus up
        to a quarter of jitter (so a receiver back from an outage is not hit all at once)."""
        delay = capped_backoff(
            attempt,
            base=self.settings.outbound_webhook_retry_base_seconds,
            cap=self.settings.outbound_webhook_retry_max_seconds,
        )
        return delay + self.jitter(delay)

    def jitter(self, delay: float) -> float:
        return random.uniform(0, delay / 4)

    async def attempt(self, delivery_id: uuid.UUID) -> AttemptOutcome | None:
        """One attempt at the delivery, if it is pending and due (None otherwise: delivered,
        given up, deleted with its endpoint, or another job's attempt is under way)."""
        timeout = self.settings.outbound_webhook_timeout_seconds
        async with self.session_factory() as session:
            repository = OutboundRepository(session)
            now = utcnow()
            # Held for longer than an attempt can take; a job whose worker died mid-attempt
            # leaves the delivery to be attempted again once this passes.
            if not await repository.claim(delivery_id, now, now + timedelta(seconds=timeout * 4)):
                await session.commit()
                return None
            delivery = await repository.delivery(delivery_id)
            assert delivery is not None
            endpoint = await repository.endpoint_by_id(delivery.endpoint_id)
            assert endpoint is not None
            await session.commit()
            number = delivery.attempts + 1
            started = time.monotonic()
            status_code, error, duration_ms = await self._post(endpoint, delivery)
            seconds = time.monotonic() - started
            delivered = error is None
            attempted_at = utcnow()
            retry_at = None
            if delivered:
                status, outcome = DeliveryStatus.DELIVERED, "delivered"
            elif number >= self.settings.outbound_webhook_attempts:
                status, outcome = DeliveryStatus.FAILED, "given_up"
            else:
                status, outcome = DeliveryStatus.PENDING, "retrying"
                retry_at = attempted_at + timedelta(seconds=self.backoff(number))
            metrics.OUTBOUND_ATTEMPTS.labels(delivery.event_type, outcome).inc()
            metrics.OUTBOUND_ATTEMPT_DURATION.labels(delivery.event_type, outcome).observe(seconds)
            await repository.record_attempt(
                WebhookDeliveryAttempt(
                    delivery_id=delivery.id,
                    attempt=number,
                    attempted_at=attempted_at,
                    status_code=status_code,
                    error=error,
                    duration_ms=duration_ms,
                ),
                status=status,
                next_attempt_at=retry_at,
                delivered_at=attempted_at if delivered else None,
            )
            await session.commit()
        log = logger.info if delivered else logger.warning
        log(
            "outbound webhook attempt",
            extra={
                "delivery_id": str(delivery_id),
                "endpoint_id": str(endpoint.id),
                "event_type": delivery.event_type,
                "attempt": number,
                "status_code": status_code,
                "error": error,
                "outcome": status.value,
            },
        )
        return AttemptOutcome(delivered=delivered, retry_at=retry_at)

    async def _post(
        self, endpoint: WebhookEndpoint, delivery: WebhookDelivery
    ) -> tuple[int | None, str | None, int]:
        """POST the signed payload: (status code, error or None when 2xx, milliseconds)."""
        body = json_dumps(delivery.payload)
        message_id = str(delivery.id)
        sent_at = utcnow()
        signature = Webhook(self.cipher.decrypt(endpoint.secret_ciphertext)).sign(
            message_id, sent_at, body
        )
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signature,
        }
        timeout = self.settings.outbound_webhook_timeout_seconds
        started = time.monotonic()
        try:
            response = await self.http.post(
                endpoint.url,
                content=body.encode(),
                headers=headers,
                timeout=httpx.Timeout(timeout),
                follow_redirects=False,
            )
        except httpx.TimeoutException:
            return None, "timeout", _ms_since(started)
        except httpx.HTTPError as error:
            return None, type(error).__name__, _ms_since(started)
        if 200 <= response.status_code < 300:
            return response.status_code, None, _ms_since(started)
        return response.status_code, f"HTTP {response.status_code}", _ms_since(started)


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
