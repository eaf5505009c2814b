"""The periodic job that keeps every active connection fresh: each minute (or every
SCHEDULE_TICK_SECONDS) it stores the daily budget readings this process has seen, asks
`ScheduleService.due` what is due now or before the tick after next, and queues those syncs,
each for its instant, through `SyncsService.queue_each` (which returns the run already queued
or running for a connection and object type rather than starting a second)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta

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


# Due syncs queued per batch: a few statements each (`SyncsService.queue_each`), bounded so
# one statement's parameters stay well inside both databases' limits.
QUEUE_BATCH = 200


async def queue_due(
    session_factory: async_sessionmaker[AsyncSession],
    factory: IntegrationFactory,
    job_app: procrastinate.App,
    due: Sequence[DueSync],
) -> int:
    """Queue the due syncs, the longest due first, in batches; how many were queued. A
    connection that cannot be synced now (it needs a new consent, it was disconnected
    meanwhile) is logged and skipped, so one connection never holds back the others."""
    queued = 0
    for start in range(0, len(due), QUEUE_BATCH):
        batch = due[start : start + QUEUE_BATCH]
        async with session_factory() as session:
            outcomes = await SyncsService(session, factory).queue_each(
                [item.request() for item in batch],
                job_app,
                not_before=[item.slot_at for item in batch],
            )
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, LedgersyncError):
                logger.warning(
                    "scheduled sync not queued",
                    extra={
                        "connection_id": str(item.connection_id),
                        "object_type": item.object_type,
                        "error": outcome.code,
                        "detail": outcome.detail,
                    },
                )
            else:
                queued += 1
    return queued


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
        due = await service.due(utcnow(), ahead=look_ahead(settings))
    queued = await queue_due(session_factory, factory, job_app, due)
    if due:
        logger.info("scheduled syncs queued", extra={"due": len(due), "queued": queued})
    return due


def look_ahead(settings: Settings) -> timedelta:
    """How far ahead a tick queues slots: up to the tick after next, so that a slot is queued
    before it comes even when the next tick starts late or takes a while."""
    return timedelta(seconds=2 * settings.schedule_tick_seconds)


def every_tick(settings: Settings) -> str:
    """The scheduler's cron: every minute, or every SCHEDULE_TICK_SECONDS within it."""
    tick = settings.schedule_tick_seconds
    return "* * * * *" if tick == 60 else f"* * * * * */{tick}"


def every_tick_when_scheduling(settings: Settings) -> str | None:
    """The scheduler's cron, or None (no periodic job) when SCHEDULED_SYNCS is off."""
    return every_tick(settings) if settings.scheduled_syncs else None


@job_tasks.task(
    "schedules.enqueue_due_syncs",
    queue="maintenance",
    cron=every_tick_when_scheduling,
    pass_context=True,
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
