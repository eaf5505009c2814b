"""The periodic job that queues the reconciliation sweeps that are due (nightly by default), each
through `ReconcileService.queue`, one transaction each. A connection with another invoice sync
waiting is skipped and stays due: a later tick queues its sweep."""

from __future__ import annotations

import logging

import procrastinate
from procrastinate import JobContext
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.database import utcnow
from src.core.errors import LedgersyncError
from src.core.jobs import job_tasks
from src.domains.external_accounting.base.factory import (
    RESOURCES,
    IntegrationFactory,
    ServiceResources,
)
from src.domains.external_accounting.reconciliation.service import (
    DueSweep,
    ReconcileService,
    SweepScheduler,
)
from src.domains.external_accounting.schedules.tasks import every_tick_when_scheduling

logger = logging.getLogger(__name__)


async def enqueue_due(
    session_factory: async_sessionmaker[AsyncSession],
    factory: IntegrationFactory,
    job_app: procrastinate.App,
) -> list[DueSweep]:
    """One pass: queue every sweep due now; the sweeps queued."""
    async with session_factory() as session:
        due = await SweepScheduler(session, factory.settings).due(utcnow())
    queued = []
    for item in due:
        try:
            async with session_factory() as session:
                await ReconcileService(session, factory).queue(
                    item.organization_id, job_app, connection_id=item.connection_id
                )
                await session.commit()
        except LedgersyncError as error:
            logger.info(
                "reconciliation sweep not queued yet",
                extra={
                    "connection_id": str(item.connection_id),
                    "error": error.code,
                    "detail": error.detail,
                },
            )
            continue
        queued.append(item)
    if due:
        logger.info("reconciliation sweeps queued", extra={"due": len(due), "queued": len(queued)})
    return queued


@job_tasks.task(
    "reconciliation.enqueue_due_sweeps",
    queue="maintenance",
    cron=every_tick_when_scheduling,
    pass_context=True,
)
async def enqueue_due_sweeps(context: JobContext, timestamp: int) -> None:
    """Every scheduler tick: queue the reconciliation sweeps that are due."""
    resources: ServiceResources = context.additional_context[RESOURCES]
    await enqueue_due(resources.session_factory, resources.factory, context.app)
