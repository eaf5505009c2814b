"""Xero's webhook events: `WebhookReceiver` stores a delivery's events and queues one job per
connection (never syncing inline: Xero wants an answer within 5 s), and `WebhookEvents` is what
that job does with a connection's pending events: stale ones cost nothing, the rest become one
targeted sync.

Events are stored for the tenants a connection of ours holds (in any status) and SUBSCRIPTION
events (they are about our application, not a tenant). Events for tenants we do not hold are
answered 200 and dropped: nobody here could act on them, and a tenant connected later starts
with a full sync, which makes its earlier events moot."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import procrastinate
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from src.core import metrics
from src.core.database import utcnow
from src.core.jobs import AlreadyQueued, defer_job
from src.core.settings import Settings
from src.domains.external_accounting.base.factory import IntegrationFactory
from src.domains.external_accounting.connections.models import ConnectionStatus
from src.domains.external_accounting.connections.repository import ConnectionRepository
from src.domains.external_accounting.exceptions import (
    NoActiveConnection,
    ProviderRateLimited,
    SyncInProgress,
)
from src.domains.external_accounting.ledger.models import SyncMode
from src.domains.external_accounting.ledger.repository import LedgerRepository
from src.domains.external_accounting.xero.data.changed_invoices import ALL_TYPES_SCOPE
from src.domains.external_accounting.xero.webhooks.exceptions import (
    JobQueueUnavailable,
    WebhookPayloadInvalid,
)
from src.domains.external_accounting.xero.webhooks.models import (
    SYNCED_CATEGORIES,
    EventCategory,
    EventStatus,
    WebhookEvent,
)
from src.domains.external_accounting.xero.webhooks.repository import WebhookEventRepository
from src.domains.external_accounting.xero.webhooks.schemas import (
    EVENT_TYPES,
    XeroDeliveryIn,
    XeroEventIn,
)

logger = logging.getLogger(__name__)

# The job that handles a connection's pending events; the name is stored in queued jobs.
SYNC_EVENTS_TASK = "webhooks.sync_events"
WEBHOOK_QUEUE = "sync"


def events_lock(connection_id: uuid.UUID) -> str:
    """The queueing lock and lock of a connection's event jobs: one waiting (a burst of
    deliveries finds it and adds its events), one running."""
    return f"webhooks:{connection_id}"


async def defer_events_job(
    job_app: procrastinate.App, connection_id: uuid.UUID, delay_s: float
) -> int | None:
    """Queue the connection's event job to start after `delay_s`; None when one already waits
    (it reads every pending event when it starts, these included)."""
    lock = events_lock(connection_id)
    try:
        return await defer_job(
            job_app,
            SYNC_EVENTS_TASK,
            queueing_lock=lock,
            lock=lock,
            schedule_at=utcnow() + timedelta(seconds=delay_s),
            connection_id=str(connection_id),
        )
    except AlreadyQueued:
        return None


def parse_delivery(body: bytes) -> XeroDeliveryIn:
    """A signed body as Xero's delivery; `WebhookPayloadInvalid` (400) for anything else (not
    JSON, other shapes, nesting too deep to be Xero's)."""
    try:
        return XeroDeliveryIn.model_validate_json(body)
    except ValidationError as error:
        metrics.WEBHOOK_DELIVERIES_REJECTED.labels("invalid").inc()
        first = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "body"
        raise WebhookPayloadInvalid(
            f"The delivery is not a batch of Xero webhook events ({where}: {first['msg']})."
        ) from None


class WebhookReceiver:
    """Stores a delivery's events once each and queues their connections' jobs."""

    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.events = WebhookEventRepository(session)

    async def receive(self, delivery: XeroDeliveryIn, job_app: procrastinate.App) -> None:
        """Store what is ours (committed before any job is queued, so the job finds it), then
        queue a job for each connection with pending events after the coalescing window.
        Redelivered events are not stored twice, and queue a job only while still pending
        (the first delivery's job may have been lost)."""
        metrics.WEBHOOK_EVENTS_RECEIVED.inc(len(delivery.events))
        known = [e for e in delivery.events if _is_known(e)]
        tenants = await self.events.connections_by_tenant(
            str(e.tenant_id) for e in known if e.event_category != EventCategory.SUBSCRIPTION
        )
        now = utcnow()
        rows = [row for e in known if (row := _row(e, tenants, now)) is not None]
        added = await self.events.add_events(rows)
        synced = {r["connection_id"] for r in rows if r["status"] == EventStatus.PENDING.value}
        waiting = await self.events.connections_with_pending(synced)
        await self.session.commit()
        logger.info(
            "xero webhook delivery",
            extra={
                "events": len(delivery.events),
                "stored": added,
                "unknown_kind": len(delivery.events) - len(known),
                "foreign_tenant": len(known) - len(rows),
                "connections": len(waiting),
            },
        )
        for connection_id in waiting:
            try:
                await defer_events_job(
                    job_app, connection_id, self.settings.webhook_coalesce_seconds
                )
            except Exception as error:
                raise JobQueueUnavailable(
                    "The events were stored but their sync could not be queued; deliver again."
                ) from error


def _is_known(event: XeroEventIn) -> bool:
    return event.event_category in EventCategory.__members__ and event.event_type in EVENT_TYPES


def _row(event: XeroEventIn, tenants: dict[str, uuid.UUID], now: datetime) -> dict[str, Any] | None:
    """The event's row, or None for a tenant no connection of ours holds."""
    category = EventCategory(event.event_category)
    connection_id = tenants.get(str(event.tenant_id))
    if connection_id is None and category != EventCategory.SUBSCRIPTION:
        return None
    ignored = category not in SYNCED_CATEGORIES
    return {
        "id": uuid.uuid4(),
        "tenant_id": str(event.tenant_id),
        "category": category.value,
        "event_type": event.event_type,
        "resource_id": str(event.resource_id),
        "event_at": event.event_at,
        "received_at": now,
        "connection_id": connection_id,
        "status": (EventStatus.IGNORED if ignored else EventStatus.PENDING).value,
        "processed_at": now if ignored else None,
        "job_id": None,
        "sync_run_id": None,
    }


class WebhookEvents:
    """What a connection's event job does: pending events in, at most one targeted run out."""

    def __init__(self, session: AsyncSession, factory: IntegrationFactory) -> None:
        self.session = session
        self.factory = factory
        self.settings = factory.settings
        self.events = WebhookEventRepository(session)

    async def sync_pending(
        self, connection_id: uuid.UUID, job_id: int | None, job_app: procrastinate.App
    ) -> None:
        """Handle the connection's pending events (idempotent: nothing pending, nothing done).
        Stale INVOICE events (not newer than the version we hold) are marked so and cost no
        call; the others, with the CREDITNOTE events, are one targeted run. While another sync
        holds the lease, or a daily-limit pause lasts, the events stay pending and the job is
        queued again for later."""
        events = await self.events.pending_events(connection_id)
        if not events:
            await self.session.commit()
            return
        connection = await ConnectionRepository(self.session).get(connection_id)
        if connection is None or connection.status != ConnectionStatus.ACTIVE.value:
            await self._finish(events, EventStatus.SKIPPED, job_id)
            return
        ledger = LedgerRepository(self.session)
        invoices = [e for e in events if e.category == EventCategory.INVOICE.value]
        notes = [e for e in events if e.category == EventCategory.CREDITNOTE.value]
        stored = await ledger.invoice_versions(connection_id, [e.resource_id for e in invoices])
        stale = [
            e
            for e in invoices
            if e.resource_id in stored and e.event_at <= stored[e.resource_id].provider_updated_at
        ]
        stale_ids = {e.id for e in stale}
        fresh = [e for e in invoices if e.id not in stale_ids]
        await self.events.mark([e.id for e in stale], EventStatus.STALE, job_id=job_id)
        todo = fresh + notes
        if not todo:
            await self.session.commit()
            logger.info("webhook events all stale", extra={"connection_id": str(connection_id)})
            return
        cursor = await ledger.get_cursor(connection_id, ALL_TYPES_SCOPE)
        known_changes = (
            await self.events.invoice_changes_since(connection_id, cursor) if cursor else 0
        )
        await self.session.commit()
        try:
            result = await self.factory.xero_sync_service().sync_changed_invoices(
                connection,
                invoice_ids=list(dict.fromkeys(e.resource_id for e in fresh)),
                credit_note_ids=list(dict.fromkeys(e.resource_id for e in notes)),
                changes_since_cursor=known_changes,
            )
        except SyncInProgress:
            # Another sync of the connection runs: after it, not beside it (nor instead of it).
            await defer_events_job(job_app, connection_id, self.settings.webhook_busy_retry_seconds)
            return
        except NoActiveConnection:
            await self._finish(todo, EventStatus.SKIPPED, job_id)
            return
        if result.resume_after is not None and (
            result.mode == SyncMode.PAUSED or result.error == ProviderRateLimited.code
        ):
            # Xero's daily limit: nothing more is asked today; the events wait for its end.
            delay = max(0.0, (result.resume_after - utcnow()).total_seconds())
            await defer_events_job(job_app, connection_id, delay)
            return
        status = EventStatus.SYNCED if result.success else EventStatus.FAILED
        await self._finish(todo, status, job_id, result.sync_run_id)
        counts = Counter(e.category for e in todo)
        logger.info(
            "webhook events synced",
            extra={
                "connection_id": str(connection_id),
                "sync_run_id": str(result.sync_run_id),
                "stale": len(stale),
                "invoice_events": counts[EventCategory.INVOICE.value],
                "credit_note_events": counts[EventCategory.CREDITNOTE.value],
                "api_calls": result.api_calls,
                "success": result.success,
            },
        )

    async def _finish(
        self,
        events: list[WebhookEvent],
        status: EventStatus,
        job_id: int | None,
        sync_run_id: uuid.UUID | None = None,
    ) -> None:
        await self.events.mark(
            [e.id for e in events], status, job_id=job_id, sync_run_id=sync_run_id
        )
        await self.session.commit()
