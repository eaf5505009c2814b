"""The jobs that deliver outbound webhooks. `outbound.dispatch` (every
OUTBOUND_WEBHOOK_TICK_SECONDS) queues a `outbound.deliver` job per delivery that is due;
`deliver` makes one attempt and, when another is to follow, queues itself again for after the
backoff. Both take ids only and are idempotent: a delivery that is not pending and due (already
delivered, given up, deleted with its endpoint, or being attempted by another job) is left
alone, so a job run twice, or a tick racing a retry, sends nothing twice.
`outbound.announce_changes` (every tick too) writes the batched `invoices.changed` /
`accounts.changed` events of the changes committed since its last pass and queues their
deliveries at once; a pass run twice announces nothing twice (`ChangeAnnouncer`)."""

from __future__ import annotations

import uuid
from datetime import datetime

import procrastinate
from procrastinate import JobContext

from src.core.jobs import AlreadyQueued, defer_job, job_tasks
from src.core.settings import Settings
from src.domains.external_accounting.base.factory import RESOURCES, ServiceResources
from src.domains.external_accounting.outbound.service import ChangeAnnouncer, WebhookSender

DELIVER_TASK = "outbound.deliver"
OUTBOUND_QUEUE = "outbound"


def delivery_lock(delivery_id: uuid.UUID | str) -> str:
    """One job per delivery waiting, and one running."""
    return f"outbound:{delivery_id}"


async def queue_delivery(
    job_app: procrastinate.App, delivery_id: uuid.UUID | str, at: datetime | None = None
) -> bool:
    """Queue the delivery's next attempt (at `at`); False when a job for it already waits."""
    lock = delivery_lock(delivery_id)
    try:
        await defer_job(
            job_app,
            DELIVER_TASK,
            queueing_lock=lock,
            lock=lock,
            schedule_at=at,
            delivery_id=str(delivery_id),
        )
    except AlreadyQueued:
        return False
    return True


def sender(resources: ServiceResources) -> WebhookSender:
    """The sender on the process's sessions, HTTP client and cipher."""
    return WebhookSender(
        resources.session_factory, resources.http, resources.settings, resources.cipher
    )


def every_tick(settings: Settings) -> str:
    tick = settings.outbound_webhook_tick_seconds
    return "* * * * *" if tick == 60 else f"* * * * * */{tick}"


@job_tasks.task("outbound.dispatch", queue=OUTBOUND_QUEUE, cron=every_tick, pass_context=True)
async def dispatch(context: JobContext, timestamp: int) -> None:
    """Queue a delivery job for every delivery due now (new events, and retries whose job was
    lost with an in-memory queue)."""
    resources: ServiceResources = context.additional_context[RESOURCES]
    for delivery_id in await sender(resources).due():
        await queue_delivery(context.app, delivery_id)


@job_tasks.task(DELIVER_TASK, queue=OUTBOUND_QUEUE, pass_context=True)
async def deliver(context: JobContext, *, delivery_id: str) -> None:
    """One attempt at the delivery; the next one queued for after its backoff if it failed
    with attempts left (OUTBOUND_WEBHOOK_ATTEMPTS)."""
    resources: ServiceResources = context.additional_context[RESOURCES]
    outcome = await sender(resources).attempt(uuid.UUID(delivery_id))
    if outcome is not None and outcome.retry_at is not None:
        await queue_delivery(context.app, delivery_id, at=outcome.retry_at)


@job_tasks.task(
    "outbound.announce_changes", queue=OUTBOUND_QUEUE, cron=every_tick, pass_context=True
)
async def announce_changes(context: JobContext, timestamp: int) -> None:
    """Announce the changes committed since the last pass, and queue their deliveries."""
    resources: ServiceResources = context.additional_context[RESOURCES]
    announcer = ChangeAnnouncer(resources.session_factory, resources.settings)
    for delivery_id in await announcer.announce():
        await queue_delivery(context.app, delivery_id)
