"""The job that runs a background sync: `run_sync(run_id)` runs a queued run through the same
path as a synchronous sync (`SyncsService` -> the provider's sync service -> `ledger.runs`). It
takes only the run's id, opens its own session, and is idempotent: a run that ended, or that
another job is responsible for, is left alone. The process's shared resources (engine, HTTP
client, call limiter, token manager, IntegrationFactory) come from the worker's context."""

from __future__ import annotations

import uuid

from procrastinate import JobContext

from src.core.jobs import job_tasks
from src.domains.external_accounting.base.factory import RESOURCES, ServiceResources
from src.domains.external_accounting.base.sync import RunClaim
from src.domains.external_accounting.syncs.service import RUN_SYNC_TASK, SYNC_QUEUE, SyncsService


@job_tasks.task(RUN_SYNC_TASK, queue=SYNC_QUEUE, pass_context=True)
async def run_sync(context: JobContext, *, run_id: str) -> None:
    """Run the queued sync run `run_id` (resuming it from its checkpoint when an earlier attempt
    of the same job died mid-run), then queue it again if it paused or failed for a while."""
    resources: ServiceResources = context.additional_context[RESOURCES]
    job = context.job
    assert job.id is not None
    claim = RunClaim(run_id=uuid.UUID(run_id), job_id=job.id, job_attempt=job.attempts)
    async with resources.session_factory() as session:
        await SyncsService(session, resources.factory).run_queued(claim, context.app)
