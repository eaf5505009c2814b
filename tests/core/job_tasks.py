"""Tasks for the job-queue tests only. They leave their trace in a file, so a worker in another
process can be observed; a `ledgersync worker` loads them through JOB_TASK_MODULES."""

from __future__ import annotations

import asyncio
from pathlib import Path

from procrastinate import JobContext

from src.core.jobs import job_tasks

MODULE = __name__


def _write(path: str, line: str) -> None:
    with Path(path).open("a", encoding="utf-8") as trace:
        trace.write(line + "\n")


@job_tasks.task("tests.record")
async def record(path: str, label: str) -> None:
    _write(path, label)


@job_tasks.task("tests.record_slowly")
async def record_slowly(path: str, label: str, seconds: float) -> None:
    _write(path, f"{label} started")
    await asyncio.sleep(seconds)
    _write(path, f"{label} done")


@job_tasks.task("tests.hang_on_first_attempt", pass_context=True)
async def hang_on_first_attempt(context: JobContext, path: str, label: str) -> None:
    """The first attempt never ends (its worker is to be killed); a later one finishes."""
    _write(path, f"{label} attempt {context.job.attempts}")
    if context.job.attempts == 0:
        await asyncio.sleep(3600)
    _write(path, f"{label} done")


@job_tasks.task("tests.record_shared_resource", pass_context=True)
async def record_shared_resource(context: JobContext, path: str) -> None:
    """What the process running the worker handed its tasks (`additional_context`)."""
    _write(path, str(context.additional_context["resource"]))
