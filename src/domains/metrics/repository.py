"""The job queue's depth and latency, read from Procrastinate's tables (PostgreSQL, in their
own schema)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from src.core.jobs import JOBS_SCHEMA

# Jobs waiting or running (finished ones are history, not depth), per queue and status.
_DEPTH = text(
    "SELECT queue_name, status::text, count(*) "
    f"FROM {JOBS_SCHEMA}.procrastinate_jobs "
    "WHERE status IN ('todo', 'doing') GROUP BY queue_name, status"
)
# Since when each queue's oldest due job has waited: its scheduled time, or when it was
# (re)deferred if it was due at once.
_OLDEST = text(
    "SELECT j.queue_name, min(coalesce(j.scheduled_at, ("
    f"  SELECT max(e.at) FROM {JOBS_SCHEMA}.procrastinate_events e WHERE e.job_id = j.id"
    "  AND e.type IN ('deferred', 'deferred_for_retry')))) "
    f"FROM {JOBS_SCHEMA}.procrastinate_jobs j WHERE j.status = 'todo' "
    "AND (j.scheduled_at IS NULL OR j.scheduled_at <= now()) GROUP BY j.queue_name"
)


class QueueRepository:
    """Procrastinate's `procrastinate_jobs`, as numbers."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def depth(self) -> list[tuple[str, str, int]]:
        """(queue, status, jobs) for jobs waiting or running."""
        rows = await self.session.execute(_DEPTH)
        return [(queue, status, int(count)) for queue, status, count in rows]

    async def oldest_waiting(self) -> dict[str, datetime]:
        """Per queue, since when its oldest due job has waited."""
        rows = await self.session.execute(_OLDEST)
        return {queue: since for queue, since in rows if since is not None}
