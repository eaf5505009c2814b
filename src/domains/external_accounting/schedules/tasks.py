"""The periodic job that keeps every active connection fresh: each minute (or every
SCHEDULE_TICK_SECONDS) it stores the daily budget readings this process has seen, asks
`ScheduleService.due` what is due and queues those syncs through `SyncsService.queue` (which
returns the run already queued or running for a connection and object type rather than
starting a second)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

import procrastinate
from procrastinate import JobContext
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.database import utcnow
from src.core.errors import LedgersyncError
from src.core.jobs import job_tasks
from src.core.settings import Settings
from src.domains.external_accounting.base.factory import (
    RESOURCES,
    IntegrationFactory,
    ServiceResources,
)
from src.domains.external_accounting.connections.models import Provider
from src.domains.external_accounting.schedules.service import (
    DayLimitReading,
    DueSync,
    ScheduleService,
)
from src.domains.external_accounting.syncs.service import SyncsService

logger = logging.getLogger(__name__)


async def queue_due(
    session_factory: async_sessionmaker[AsyncSession],
    factory: IntegrationFactory,
    job_app: procrastinate.App,
    due: Sequence[DueSync],
    *,
    concurrency: int = 1,
) -> int:
    """Queue each due sync in its own transaction, `concurrency` at a time, the longest due
    first; how many were queued. A connection that cannot be synced now (it needs a new
    consent, it was disconnected meanwhile) is logged and skipped, so one connection never holds
    back the others."""
    slots = asyncio.Semaphore(concurrency)

    async def queue_one(item: DueSync) -> bool:
        async with slots:
            try:
                async with session_factory() as session:
                    await SyncsService(session, factory).queue(item.request(), job_app)
                    await session.commit()
            except LedgersyncError as error:
                logger.warning(
                    "scheduled sync not queued",
                    extra={
                        "connection_id": str(item.connection_id),
                        "object_type": item.object_type,
                        "error": error.code,
                        "detail": error.detail,
                    },
                )
                return False
            return True

    # Tasks start in order and the semaphore wakes waiters first come, first served.
    queued = await asyncio.gather(*(queue_one(item) for item in due))
    return sum(queued)


async def enqueue_due(
    session_factory: async_sessionmaker[AsyncSession],
    factory: IntegrationFactory,
    job_app: procrastinate.App,
    settings: Settings,
    readings: Mapping[str, DayLimitReading] | None = None,
) -> list[DueSync]:
    """One scheduler pass: store `readings` (Xero's last daily budget per tenant, as this
    process saw them), then queue what is due now; the syncs found due."""
    async with session_factory() as session:
        service = ScheduleService(session, settings)
        if readings:
            await service.record_day_limits(Provider.XERO.value, readings)
            await session.commit()
        due = await service.due(utcnow())
    # SQLite has one writer: concurrent queueing would only wait on its lock.
    concurrency = 1 if settings.is_sqlite else settings.schedule_queue_concurrency
    queued = await queue_due(session_factory, factory, job_app, due, concurrency=concurrency)
    if due:
        logger.info("scheduled syncs queued", extra={"due": len(due), "queued": queued})
    return due


def every_tick(settings: Settings) -> str:
    """The scheduler's cron: every minute, or every SCHEDULE_TICK_SECONDS within it."""
    tick = settings.schedule_tick_seconds
    return "* * * * *" if tick == 60 else f"* * * * * */{tick}"


@job_tasks.task(
    "schedules.enqueue_due_syncs", queue="maintenance", cron=every_tick, pass_context=True
)
async def enqueue_due_syncs(context: JobContext, timestamp: int) -> None:
    """Every minute: queue the scheduled syncs that are due (`timestamp` is the tick's; what is
    due is decided at the current instant, so a late tick queues nothing twice)."""
    resources: ServiceResources = context.additional_context[RESOURCES]
    await enqueue_due(
        resources.session_factory,
        resources.factory,
        context.app,
        resources.settings,
        readings=resources.xero_throttle.budgets,
    )
