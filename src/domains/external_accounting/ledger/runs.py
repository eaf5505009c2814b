"""A sync run's life, through the repository: start (the lease, after releasing runs that died),
the fence every write transaction begins with, the heartbeat, the checkpoint written with every
page, and the finish that records how the run ended. Provider sync services do the fetching and
call this for everything about the run itself."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core import metrics
from src.core.database import is_retryable_conflict, utcnow
from src.core.errors import LedgersyncError
from src.core.log_context import log_context
from src.domains.external_accounting.base.sync import ConnectionSyncResult, ObjectType, RunClaim
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.connections.repository import (
    ConnectionRepository,
    UsageRepository,
)
from src.domains.external_accounting.connections.usage import UsageDelta, UsageTally
from src.domains.external_accounting.exceptions import (
    TEMPORARY_FAILURES,
    NoActiveConnection,
    ProviderRateLimited,
    RunNotClaimable,
    SyncCrashed,
    SyncInProgress,
    SyncLeaseLost,
)
from src.domains.external_accounting.ledger.models import (
    RunStatus,
    RunTrigger,
    SyncMode,
    SyncRun,
)
from src.domains.external_accounting.ledger.repository import LedgerRepository
from src.domains.external_accounting.outbound.models import EventType
from src.domains.external_accounting.outbound.service import emit

logger = logging.getLogger(__name__)

# How often a live run beats while it waits (call limiter, Retry-After, backoff): well inside
# STALE_RUN_AFTER, so a long legitimate wait is never taken for a dead run.
HEARTBEAT_EVERY_S = 60.0
# Tries of a run's finish transaction when it loses a lock conflict (see `_store_finish`).
FINISH_ATTEMPTS = 4


@dataclass
class RunProgress:
    """Counters of a run, written to its `sync_runs` row after every page."""

    run_id: uuid.UUID
    # The run's fencing token: every write of the run is conditional on still holding it.
    lease: uuid.UUID
    connection_id: uuid.UUID
    mode: str
    object_type: str = "invoices"
    # An incremental run re-reads the second before its cursor; those unchanged re-reads are
    # not news and do not count. A full run counts every invoice it covered.
    count_unchanged: bool = True
    started: float = field(default_factory=time.monotonic)
    # Counting each invoice once without remembering ids (memory stays flat whatever the size):
    # an invoice already written or verified by this run has `synced_at` at or after this.
    started_at: datetime = field(default_factory=utcnow)
    # Full syncs: which phase is running and its keyset position, saved with every page.
    checkpoint_base: dict[str, Any] | None = None
    phase: int = 0
    phase_since: datetime | None = None
    # A full sync paging partitions side by side: each one's range and keyset position, as the
    # pages stored so far left them (None for a single keyset).
    partitions: list[dict[str, Any]] | None = None
    count: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    # Records whose content differed although their timestamp had not moved, and how many of
    # them were rewritten (the reconciliation sweep; an accounts sync's deletions).
    found: int = 0
    corrected: int = 0
    # A sweep that stopped at its call cap ends in success but keeps its checkpoint: the next
    # sweep goes on from there.
    keep_checkpoint: bool = False
    newest: datetime | None = None
    # Live progress: pages stored, and what the run is doing ("window", "outstanding",
    # "changes", "accounts").
    pages: int = 0
    phase_name: str | None = None
    # What earlier attempts of the same run (a resumed background run) had already spent.
    api_calls_before: int = 0
    created_before: int = 0
    updated_before: int = 0
    limit_wait_before: float = 0.0
    # A background run that fails on something temporary goes back to `queued` (its job
    # re-queues it after backoff) while it has retries left; `attempts` counts them.
    attempts: int = 0
    retries_left: int = 0

    def checkpoint(self) -> dict[str, Any] | None:
        """Where a full sync got to, for a later run to resume from."""
        if self.checkpoint_base is None:
            return None
        return {
            **self.checkpoint_base,
            "phase": self.phase,
            "since": self.phase_since.isoformat() if self.phase_since else None,
            "newest": self.newest.isoformat() if self.newest else None,
            **({"partitions": self.partitions} if self.partitions is not None else {}),
        }

    def note_updated_at(self, moment: datetime | None) -> None:
        if moment is not None and (self.newest is None or moment > self.newest):
            self.newest = moment


def run_event_data(
    connection: Connection, progress: RunProgress, status: RunStatus, finished: dict[str, Any]
) -> dict[str, Any]:
    """What `sync.finished` / `sync.failed` tell an endpoint about the run that ended."""
    return {
        "sync_run_id": str(progress.run_id),
        "connection_id": str(connection.id),
        "tenant_id": connection.tenant_id,
        "object_type": progress.object_type,
        "mode": progress.mode,
        "status": str(status),
        "count": progress.count,
        "created": progress.created,
        "updated": progress.updated,
        "unchanged": progress.unchanged,
        "error": finished["error"],
        "error_detail": finished["error_detail"],
        "finished_at": finished["finished_at"].isoformat(),
    }


def new_run(
    connection: Connection,
    object_type: ObjectType,
    *,
    mode: SyncMode,
    params: dict[str, Any],
    status: RunStatus = RunStatus.RUNNING,
    trigger: RunTrigger = RunTrigger.REQUEST,
) -> SyncRun:
    """A run not yet recorded (`SyncRuns.take_lease` records a running one,
    `LedgerRepository.add_queued_run` a queued one)."""
    return SyncRun(
        organization_id=connection.organization_id,
        connection_id=connection.id,
        object_type=object_type,
        mode=mode,
        params=params,
        status=status,
        trigger=trigger,
        pages=0,
        limit_wait_seconds=0.0,
        attempts=0,
    )


class SyncRuns:
    """The runs of one sync service; `api_calls` reads its client's count of calls so far."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        api_calls: Callable[[], int],
        limit_waits: Callable[[], float] = lambda: 0.0,
        usage: UsageTally | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.api_calls = api_calls
        # Seconds the client's calls have waited on the provider's limits so far.
        self.limit_waits = limit_waits
        # The client's calls not yet in `connection_usage`: added in every page's transaction
        # and the finish's, so usage costs no write of its own.
        self.usage = usage

    # -- start -------------------------------------------------------------------------------

    async def take_lease(self, repository: LedgerRepository, run: SyncRun) -> None:
        """Record `run` as `running` in the repository's transaction; that row is the lease on
        (connection, object type). Runs that stopped beating are released first, so a run that
        died mid-sync does not block this one. A run already holding it: `SyncInProgress`
        naming it. A connection disconnected meanwhile (the caller's copy may be stale):
        `NoActiveConnection`, so no run starts after a disconnect fenced off the running ones."""
        if not await repository.connection_active(run.connection_id):
            raise NoActiveConnection("The connection was disconnected; no sync was started.")
        await repository.release_dead_runs(run.connection_id, run.object_type)
        if not await repository.add_running_run(run):
            running = await repository.running_run_id(run.connection_id, run.object_type)
            raise SyncInProgress(
                f"A {run.object_type} sync of this connection is already running; "
                "try again when it ends.",
                sync_run_id=str(running) if running else None,
            )

    async def claim(self, repository: LedgerRepository, claim: RunClaim) -> SyncRun:
        """Take the lease for a queued run (a background sync) in the repository's transaction,
        as `take_lease` does for a new one: the run becomes `running` for the job attempt
        `claim` names (also taking over the lease the same job's dead attempt left).
        `SyncInProgress` when another run holds the connection's lease, `RunNotClaimable`
        when the run ended or another job is responsible for it."""
        run = await repository.run_by_id(claim.run_id)
        if run is None:
            raise RunNotClaimable(f"Sync run {claim.run_id} does not exist.")
        # Read before claiming: a refused claim rolls back, expiring `run`.
        connection_id, object_type = run.connection_id, run.object_type
        if not await repository.connection_active(connection_id):
            raise NoActiveConnection("The connection was disconnected; no sync was started.")
        await repository.release_dead_runs(connection_id, object_type)
        claimed = await repository.claim_run(claim.run_id, claim.job_id, claim.job_attempt)
        if claimed == "busy":
            running = await repository.running_run_id(connection_id, object_type)
            raise SyncInProgress(
                f"A {object_type} sync of this connection is already running.",
                sync_run_id=str(running) if running else None,
            )
        if claimed == "not claimable":
            raise RunNotClaimable(f"Sync run {claim.run_id} is not waiting for this job.")
        claimed_run = await repository.run_by_id(claim.run_id)
        assert claimed_run is not None
        return claimed_run

    async def start(self, connection: Connection, run: SyncRun) -> RunProgress:
        """Take the lease for `run` in a transaction of its own."""
        async with self.session_factory() as session:
            await self.take_lease(LedgerRepository(session), run)
            await session.commit()
        return self.started(connection, run)

    def started(
        self, connection: Connection, run: SyncRun, claim: RunClaim | None = None
    ) -> RunProgress:
        """The progress of a run whose lease is taken and committed (for the queued run
        `claim` names, when given)."""
        assert run.lease is not None
        logger.info(
            "sync started",
            extra={
                "sync_run_id": str(run.id),
                "connection_id": str(connection.id),
                "object_type": run.object_type,
                "mode": run.mode,
            },
        )
        # A background run resumed (after a pause, a retry, or its worker's death) goes on
        # counting from what its earlier attempts stored.
        return RunProgress(
            run_id=run.id,
            lease=run.lease,
            connection_id=run.connection_id,
            mode=run.mode,
            object_type=run.object_type,
            # Invoices this run stored in an earlier attempt are counted already. Never later
            # than now (a run queued for an instant that another clock says has not come):
            # what is fetched from here on must count, and a cursor must not pass it.
            started_at=min(run.started_at, utcnow()),
            count=run.count or 0,
            created=run.created or 0,
            updated=run.updated or 0,
            unchanged=run.unchanged or 0,
            found=run.found or 0,
            corrected=run.corrected or 0,
            pages=run.pages or 0,
            api_calls_before=run.api_calls or 0,
            created_before=run.created or 0,
            updated_before=run.updated or 0,
            limit_wait_before=run.limit_wait_seconds or 0.0,
            attempts=run.attempts or 0,
            retries_left=claim.retries_left if claim is not None else 0,
        )

    async def release(self, progress: RunProgress) -> None:
        """Give the lease back unused: the run never happened."""
        async with self.session_factory() as session, session.begin():
            await LedgerRepository(session).discard_run(progress.run_id, progress.lease)

    # -- while it runs -----------------------------------------------------------------------

    async def fence(self, repository: LedgerRepository, progress: RunProgress) -> None:
        """First statements of every write transaction of a run: it still holds its lease, and
        its connection is still active (a run started from a stale copy of a connection that a
        disconnect has since purged must not write it back). The run's row is locked before the
        connection's, the order a disconnect takes them in too."""
        if not await repository.hold_lease(
            progress.run_id, progress.lease
        ) or not await repository.connection_active(progress.connection_id):
            raise SyncLeaseLost(
                "The sync stopped: it no longer holds its lease (its connection was "
                "disconnected, or it was taken for dead and another sync took over)."
            )

    async def checkpoint(self, repository: LedgerRepository, progress: RunProgress) -> None:
        """Write the run's counters and checkpoint inside a page's transaction."""
        await repository.hold_lease(
            progress.run_id,
            progress.lease,
            checkpoint=progress.checkpoint(),
            **self._counters(progress),
        )
        await self._store_usage(repository.session)

    async def _store_usage(self, session: AsyncSession) -> None:
        if self.usage is not None:
            await UsageRepository(session).add(self.usage.drain())

    async def _keep_beating(self, progress: RunProgress) -> None:
        """Beat every HEARTBEAT_EVERY_S while the run is alive: a page may wait on the limiter,
        Retry-After and backoff far longer than a page takes, and a silent run is declared dead.
        Stops once the lease is lost (the next page's fence stops the run)."""
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY_S)
            try:
                async with self.session_factory() as session, session.begin():
                    held = await LedgerRepository(session).hold_lease(
                        progress.run_id,
                        progress.lease,
                        api_calls=self._api_calls(progress),
                        limit_wait_seconds=self._limit_waits(progress),
                    )
            except Exception as error:  # a missed beat is retried; the run must not die of it
                logger.warning(
                    "sync heartbeat failed",
                    extra={"sync_run_id": str(progress.run_id), "error": type(error).__name__},
                )
                continue
            if not held:
                return

    def _api_calls(self, progress: RunProgress) -> int:
        return progress.api_calls_before + self.api_calls()

    def _limit_waits(self, progress: RunProgress) -> float:
        return round(progress.limit_wait_before + self.limit_waits(), 3)

    def _counters(self, progress: RunProgress) -> dict[str, Any]:
        return {
            "count": progress.count,
            "created": progress.created,
            "updated": progress.updated,
            "unchanged": progress.unchanged,
            "found": progress.found,
            "corrected": progress.corrected,
            "api_calls": self._api_calls(progress),
            "last_modified": progress.newest,
            "pages": progress.pages,
            "phase": progress.phase_name,
            "limit_wait_seconds": self._limit_waits(progress),
        }

    # -- the whole run -----------------------------------------------------------------------

    async def run(
        self,
        connection: Connection,
        progress: RunProgress,
        work: Callable[[], Awaitable[None]],
    ) -> ConnectionSyncResult:
        """Do a run's work while beating in the background, and record how it ended: whatever
        ends it (an error, a crash, a cancelled task) releases the lease it still holds."""
        with log_context(
            run_id=progress.run_id,
            connection_id=connection.id,
            organization_id=connection.organization_id,
            tenant_id=connection.tenant_id,
        ):
            return await self._run(connection, progress, work)

    async def _run(
        self,
        connection: Connection,
        progress: RunProgress,
        work: Callable[[], Awaitable[None]],
    ) -> ConnectionSyncResult:
        heartbeat = asyncio.create_task(self._keep_beating(progress))
        try:
            await work()
        except LedgersyncError as error:
            heartbeat.cancel()
            return await self._finish(connection, progress, error)
        except asyncio.CancelledError:
            heartbeat.cancel()
            # Task cancelled (client gone, shutdown): record it even if cancelled again meanwhile.
            await asyncio.shield(self._finish(connection, progress, None, cancelled=True))
            raise
        except Exception as error:
            heartbeat.cancel()
            await self._finish(connection, progress, SyncCrashed(type(error).__name__))
            raise
        heartbeat.cancel()
        return await self._finish(connection, progress, None)

    async def _finish(
        self,
        connection: Connection,
        progress: RunProgress,
        error: LedgersyncError | None,
        *,
        cancelled: bool = False,
    ) -> ConnectionSyncResult:
        duration = time.monotonic() - progress.started
        resume_after = None
        if isinstance(error, ProviderRateLimited):
            resume_after = datetime.fromisoformat(str(error.extra["resume_after"]))
        retry = isinstance(error, TEMPORARY_FAILURES) and progress.retries_left > 0
        status = (
            RunStatus.CANCELLED
            if cancelled
            else RunStatus.SUCCESS
            if error is None
            else RunStatus.PAUSED
            if resume_after
            else RunStatus.QUEUED
            if retry
            else RunStatus.FAILED
        )
        succeeded = status is RunStatus.SUCCESS
        finished: dict[str, Any] = {
            **self._counters(progress),
            "status": status,
            "finished_at": utcnow(),
            "paused_until": resume_after,
            "error": "cancelled" if cancelled else error.code if error else None,
            "error_detail": "The sync was cancelled."
            if cancelled
            else error.detail
            if error
            else None,
        }
        # The checkpoint stays as the last stored page left it (the page in hand may not have
        # been stored); a finished run needs none.
        if succeeded:
            finished["checkpoint"] = progress.checkpoint() if progress.keep_checkpoint else None
        if retry:
            # Not over: queued again (keeping why), for its job to schedule the retry.
            finished.update(finished_at=None, attempts=progress.attempts + 1)
        ours = await self._store_finish(connection, progress, status, finished)
        logged_status: str = status
        if not ours and not isinstance(error, SyncLeaseLost) and not cancelled:
            # Abandoned or cancelled meanwhile: that status stands, and so does the answer
            # (logged as "lost": no run row says so).
            error, logged_status = SyncLeaseLost("The sync lost its lease before it ended."), "lost"
        api_calls = self._api_calls(progress)
        _count_finished(progress, logged_status, duration)
        log = logger.warning if error or cancelled else logger.info
        log(
            "sync finished",
            extra={
                "sync_run_id": str(progress.run_id),
                "connection_id": str(connection.id),
                "status": logged_status,
                "count": progress.count,
                "created_count": progress.created,
                "updated_count": progress.updated,
                "api_calls": api_calls,
                "duration_s": round(duration, 3),
                "error": error.code if error else None,
            },
        )
        return ConnectionSyncResult(
            connection_id=connection.id,
            tenant_name=connection.tenant_name,
            sync_run_id=progress.run_id,
            success=error is None and not cancelled,
            mode=progress.mode,
            count=progress.count,
            created=progress.created,
            updated=progress.updated,
            unchanged=progress.unchanged,
            api_calls=api_calls,
            duration_seconds=round(duration, 3),
            last_modified=progress.newest,
            error=error.code if error else None,
            error_detail=error.detail if error else None,
            resume_after=resume_after,
        )

    async def _store_finish(
        self,
        connection: Connection,
        progress: RunProgress,
        status: RunStatus,
        finished: dict[str, Any],
    ) -> bool:
        """Commit how the run ended; whether the run still held its lease. A finish that loses a
        lock conflict (deadlock, serialization failure) is tried again: left failed, its lease
        would stay held until taken for dead, and its connection could not sync meanwhile."""
        usage = self.usage.drain() if self.usage is not None else []
        for attempt in range(1, FINISH_ATTEMPTS + 1):
            try:
                async with self.session_factory() as session, session.begin():
                    return await self._write_finish(
                        session, connection, progress, status, finished, usage
                    )
            except DBAPIError as error:
                if attempt == FINISH_ATTEMPTS or not is_retryable_conflict(error):
                    if self.usage is not None:
                        self.usage.restore(usage)
                    raise
                logger.warning(
                    "sync finish retried after a lock conflict",
                    extra={"sync_run_id": str(progress.run_id), "attempt": attempt},
                )
                await asyncio.sleep(random.uniform(0.05, 0.2) * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _write_finish(
        self,
        session: AsyncSession,
        connection: Connection,
        progress: RunProgress,
        status: RunStatus,
        finished: dict[str, Any],
        usage: list[UsageDelta],
    ) -> bool:
        succeeded = status is RunStatus.SUCCESS
        ours = await LedgerRepository(session).finish_run(
            progress.run_id, progress.lease, **finished
        )
        # The connection row before the usage row, the order a page's transaction takes them
        # in (its fence share-locks the connection; its checkpoint adds usage last): the other
        # way round, a page of one run and the finish of another run of the same connection
        # deadlocked (bench/fleet.py).
        if ours and succeeded:
            await ConnectionRepository(session).mark_synced(connection.id)
        # Calls made are calls Xero metered, whether or not the run still held its lease.
        await UsageRepository(session).add(usage)
        if ours and status in (RunStatus.SUCCESS, RunStatus.FAILED):
            # Owed to the customer's endpoints in the finish's own transaction: the event
            # exists exactly when the run's end is committed.
            await emit(
                session,
                connection.organization_id,
                EventType.SYNC_FINISHED if succeeded else EventType.SYNC_FAILED,
                run_event_data(connection, progress, status, finished),
            )
        return ours


def _count_finished(progress: RunProgress, status: str, duration: float) -> None:
    """The run's attempt in the metrics: its end, its length, and what it wrote (its counters
    less what earlier attempts of the same run had counted)."""
    metrics.SYNC_RUNS.labels(progress.object_type, status).inc()
    metrics.SYNC_RUN_DURATION.labels(progress.object_type).observe(duration)
    written = metrics.RECORDS_WRITTEN
    written.labels(progress.object_type, "created").inc(progress.created - progress.created_before)
    written.labels(progress.object_type, "updated").inc(progress.updated - progress.updated_before)
