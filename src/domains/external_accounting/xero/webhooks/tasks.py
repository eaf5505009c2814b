"""The job that turns a connection's pending webhook events into (at most) one targeted sync:
`webhooks.sync_events(connection_id)`. The receiver queues it after the coalescing window with
a queueing lock per connection (a burst of deliveries is one job) and a lock (two never run at
once). It takes the connection's id, opens its own session and is idempotent: with nothing
pending it does nothing."""

from __future__ import annotations

import uuid

from procrastinate import JobContext

from src.core.jobs import job_tasks
from src.domains.external_accounting.base.factory import RESOURCES, ServiceResources
from src.domains.external_accounting.xero.webhooks.service import (
    SYNC_EVENTS_TASK,
    WEBHOOK_QUEUE,
    WebhookEvents,
)


@job_tasks.task(SYNC_EVENTS_TASK, queue=WEBHOOK_QUEUE, pass_context=True)
async def sync_events(context: JobContext, *, connection_id: str) -> None:
    """Sync what the connection's pending webhook events name."""
    resources: ServiceResources = context.additional_context[RESOURCES]
    async with resources.session_factory() as session:
        await WebhookEvents(session, resources.factory).sync_pending(
            uuid.UUID(connection_id), context.job.id, context.app
        )
