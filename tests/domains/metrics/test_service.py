"""The queue's gauges, read at scrape time from where the jobs wait: Procrastinate's tables on
PostgreSQL, the in-memory queue on SQLite (no worker runs here, so the jobs stay waiting)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import procrastinate
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import tests.core.job_tasks  # noqa: F401  (registers `tests.record`)
from src.core.database import utcnow
from src.core.jobs import build_job_app, defer_job
from src.core.settings import Settings
from src.domains.metrics.service import render_metrics
from tests.fixtures import empty_job_queue


@pytest.fixture
async def job_app(settings: Settings) -> AsyncIterator[procrastinate.App]:
    app = build_job_app(settings)
    async with app.open_async():
        await empty_job_queue(app)
        yield app
        await empty_job_queue(app)


def _gauges(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("ledgersync_job_queue")
        for sample in family.samples
    }


async def test_queue_depth_and_the_oldest_waiting_job(
    job_app: procrastinate.App, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    empty = _gauges((await render_metrics(session_factory, job_app)).decode())
    assert empty == {}

    now = utcnow()
    await defer_job(
        job_app, "tests.record", path="-", label="due", schedule_at=now - timedelta(seconds=90)
    )
    await defer_job(job_app, "tests.record", path="-", label="now")
    await defer_job(
        job_app, "tests.record", path="-", label="later", schedule_at=now + timedelta(hours=1)
    )
    gauges = _gauges((await render_metrics(session_factory, job_app)).decode())

    queues = {dict(labels)["queue"] for _, labels in gauges}
    assert len(queues) == 1
    (queue,) = queues
    assert (
        gauges[("ledgersync_job_queue_jobs", frozenset({("queue", queue), ("status", "todo")}))]
        == 3
    )
    oldest = gauges[("ledgersync_job_queue_oldest_waiting_seconds", frozenset({("queue", queue)}))]
    # The job due 90 s ago is the oldest waiting; the one scheduled for later is not waiting yet.
    assert 90 <= oldest < 150
