"""What `/metrics` answers: the process's counters (src/core/metrics.py) and the job queue's
depth and latency, read at scrape time from where the jobs wait (Procrastinate's tables on
PostgreSQL, the in-memory queue of this process on SQLite)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import procrastinate
from procrastinate.testing import InMemoryConnector
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core import metrics
from src.core.database import utcnow
from src.domains.metrics.repository import QueueRepository

WAITING_EVENTS = ("deferred", "deferred_for_retry")


async def render_metrics(
    session_factory: async_sessionmaker[AsyncSession], job_app: procrastinate.App
) -> bytes:
    """The exposition text: the process's metrics, then the queue's, read now (a registry of
    their own per scrape, so a queue that emptied shows no stale series)."""
    depth, oldest = await _queue_state(session_factory, job_app)
    registry = CollectorRegistry()
    jobs = Gauge(
        "ledgersync_job_queue_jobs",
        "Jobs waiting (todo) or running (doing), by queue.",
        ["queue", "status"],
        registry=registry,
    )
    for (queue, status), count in sorted(depth.items()):
        jobs.labels(queue, status).set(count)
    latency = Gauge(
        "ledgersync_job_queue_oldest_waiting_seconds",
        "How long the oldest job due to run has waited, by queue (queue latency).",
        ["queue"],
        registry=registry,
    )
    now = utcnow()
    for queue, since in sorted(oldest.items()):
        latency.labels(queue).set(max((now - since).total_seconds(), 0.0))
    return generate_latest(metrics.REGISTRY) + generate_latest(registry)


async def _queue_state(
    session_factory: async_sessionmaker[AsyncSession], job_app: procrastinate.App
) -> tuple[Counter[tuple[str, str]], dict[str, datetime]]:
    connector = job_app.connector
    if isinstance(connector, InMemoryConnector):
        return _in_memory_state(connector)
    async with session_factory() as session:
        repository = QueueRepository(session)
        depth = Counter({(q, s): n for q, s, n in await repository.depth()})
        return depth, await repository.oldest_waiting()


def _in_memory_state(
    connector: InMemoryConnector,
) -> tuple[Counter[tuple[str, str]], dict[str, datetime]]:
    """The same numbers from the SQLite mode's queue, which lives in this process."""
    now = utcnow()
    depth: Counter[tuple[str, str]] = Counter()
    oldest: dict[str, datetime] = {}
    for job_id, job in list(connector.jobs.items()):
        if job["status"] not in ("todo", "doing"):
            continue
        depth[(job["queue_name"], job["status"])] += 1
        scheduled = job["scheduled_at"]
        if job["status"] != "todo" or (scheduled is not None and scheduled > now):
            continue
        deferred = [
            e["at"] for e in connector.events.get(job_id, []) if e["type"] in WAITING_EVENTS
        ]
        since = scheduled or (max(deferred) if deferred else None)
        if since is not None and (
            job["queue_name"] not in oldest or since < oldest[job["queue_name"]]
        ):
            oldest[job["queue_name"]] = since
    return depth, oldest
