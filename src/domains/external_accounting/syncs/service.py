"""The one call that starts a sync, whoever asks (a route, the CLI, a queued job, a webhook): a
typed request in, a `SyncResult` out, nothing of HTTP in between. A background sync is the same
sync run by a job: `queue` records `queued` runs and defers `run_sync` jobs, `run_queued` (the
task's body) runs one through the same provider service, and re-queues it when it paused on the
daily limit or failed on something temporary."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import procrastinate
from sqlalchemy.ext.asyncio import AsyncSession

from src.core.database import utcnow
from src.core.errors import LedgersyncError
from src.core.http import capped_backoff
from src.core.jobs import AlreadyQueued, defer_job, defer_jobs
from src.domains.external_accounting.base.factory import IntegrationFactory
from src.domains.external_accounting.base.sync import (
    AccountSyncRequest,
    ConnectionSyncResult,
    InvoiceSyncRequest,
    ObjectType,
    RunClaim,
    StartedSync,
    SyncResult,
    SyncTarget,
)
from src.domains.external_accounting.connections.models import Connection, ConnectionStatus
from src.domains.external_accounting.connections.repository import ConnectionRepository
from src.domains.external_accounting.exceptions import (
    ConnectionNotFound,
    InvalidSyncParameter,
    NoActiveConnection,
    ReauthorisationRequired,
    RecordNotFound,
    RunNotClaimable,
    SyncInProgress,
    SyncRunFinished,
)
from src.domains.external_accounting.ledger.models import RunStatus, RunTrigger, SyncMode, SyncRun
from src.domains.external_accounting.ledger.repository import LedgerRepository
from src.domains.external_accounting.ledger.runs import new_run

logger = logging.getLogger(__name__)

SyncRequest = InvoiceSyncRequest | AccountSyncRequest

# The task that runs a queued run (`syncs/tasks.py`); the name is stored in queued jobs.
RUN_SYNC_TASK = "syncs.run_sync"
SYNC_QUEUE = "sync"


def sync_lock(connection_id: uuid.UUID, object_type: str) -> str:
    """The queueing lock and lock of a connection's background syncs of one object type: one
    waiting, one running, in order."""
    return f"sync:{connection_id}:{object_type}"


def request_params(request: SyncRequest) -> dict[str, object]:
    """A request's parameters, as a queued run keeps them for the job that runs it."""
    if isinstance(request, InvoiceSyncRequest):
        return {
            "incremental": request.incremental,
            "invoice_types": sorted(request.invoice_types),
            "months_back": request.months_back,
        }
    return {"account_types": sorted(request.account_types or [])}


class SyncsService:
    """Syncs the connections a request covers, all or nothing, in parallel."""

    def __init__(self, session: AsyncSession, factory: IntegrationFactory) -> None:
        self.session = session
        self.factory = factory
        self.connections = ConnectionRepository(session)

    async def sync(
        self,
        request: SyncRequest,
        on_started: Callable[[list[uuid.UUID]], None] | None = None,
    ) -> SyncResult:
        """Sync what `request` asks for; `SyncInProgress` (and nothing started) when any of its
        connections' syncs is already running. Commits the session's transaction first: none
        stays open for the length of a sync. `on_started` gets the ids of the runs once every
        lease is taken (to follow their progress, as the CLI does)."""
        connections = await self.connections_to_sync(request)
        started = time.monotonic()
        await self.session.commit()
        runs = await self._start_all(connections, lambda c: self._start(c, request))
        if on_started is not None:
            on_started([run.run_id for run in runs if run.run_id is not None])
        parts = await asyncio.gather(*(run.run() for run in runs))
        return self._combine(request.object_type, connections, parts, started)

    # -- background syncs ----------------------------------------------------------------------

    async def queue(self, request: SyncRequest, job_app: procrastinate.App) -> list[SyncRun]:
        """Queue a background sync of every connection the request covers: a `queued` run and a
        `run_sync` job each (queueing lock and lock per connection and object type). A
        connection that already has a run of this object type that has not ended (queued,
        running, or paused until its scheduled resume) gets that run back instead."""
        connections = await self.connections_to_sync(request)
        await self.session.commit()
        order = [c.id for c in connections]  # read now: a refused insert expires them
        ledger = LedgerRepository(self.session)
        runs: list[SyncRun] = []
        for connection in sorted(connections, key=lambda c: c.id):
            runs.append(await self._queue_one(ledger, connection, request, job_app))
        by_connection = {run.connection_id: run for run in runs}
        return [by_connection[connection_id] for connection_id in order]

    async def queue_each(
        self,
        requests: Sequence[SyncRequest],
        job_app: procrastinate.App,
        not_before: Sequence[datetime] | None = None,
    ) -> list[SyncRun | LedgersyncError]:
        """Queue one background sync per request, each naming its connection, as `queue` would
        each but in a handful of statements for all (the scheduler's tick queues hundreds): one
        read of the connections and of the runs under way, one insert of the queued runs, one
        call queueing their jobs, one update naming them. `not_before` (per request, aware):
        the instant its run may start, when later than now (its run's `started_at` too). Per
        request, in order: its queued run, the run already under way (as `queue` gives back),
        or why it was not queued. Requests that meet anything unusual (a connection not active,
        a run under way, a race with another request) take `queue`'s path one by one, at once."""
        ids = [request.connection_id for request in requests if request.connection_id]
        assert len(ids) == len(requests), "each request names its connection"
        assert not_before is None or len(not_before) == len(requests)
        ledger = LedgerRepository(self.session)
        connections = {c.id: c for c in await self.connections.get_many(ids)}
        under_way = await ledger.unfinished_pairs(ids)
        fresh: dict[int, SyncRun] = {}
        for index, request in enumerate(requests):
            connection = connections.get(ids[index])
            if (
                connection is not None
                and connection.organization_id == request.organization_id
                and connection.status == ConnectionStatus.ACTIVE.value
                and (connection.id, request.object_type) not in under_way
            ):
                incremental = not isinstance(request, InvoiceSyncRequest) or request.incremental
                fresh[index] = new_run(
                    connection,
                    request.object_type,
                    mode=SyncMode.INCREMENTAL if incremental else SyncMode.FULL,
                    params=request_params(request),
                    status=RunStatus.QUEUED,
                    trigger=request.trigger,
                )
                if not_before is not None:
                    fresh[index].started_at = not_before[index]
        inserted = await ledger.add_queued_runs(list(fresh.values()))
        await self.session.commit()
        now = utcnow()
        queued = {index: run for index, run in fresh.items() if run.id in inserted}
        try:
            job_ids = await defer_jobs(
                job_app,
                RUN_SYNC_TASK,
                [
                    (
                        sync_lock(run.connection_id, run.object_type),
                        {"run_id": str(run.id)},
                        run.started_at if run.started_at > now else None,
                    )
                    for run in queued.values()
                ],
            )
        except AlreadyQueued:
            # A job of one of them already waits: none was queued; each takes the usual path.
            for run in queued.values():
                await ledger.cancel_run(run.id, "Another background sync was queued first.")
            await self.session.commit()
            queued = {}
        except BaseException:
            # The job queue is unreachable: no run may wait for a job that does not exist.
            for run in queued.values():
                await ledger.cancel_run(run.id, "The sync could not be queued.")
            await self.session.commit()
            raise
        else:
            for run, job_id in zip(queued.values(), job_ids, strict=True):
                run.job_id = job_id
            await ledger.set_run_jobs({run.id: run.job_id for run in queued.values() if run.job_id})
            await self.session.commit()
        outcomes: list[SyncRun | LedgersyncError] = []
        for index, request in enumerate(requests):
            if index in queued:
                outcomes.append(queued[index])
                continue
            try:
                outcomes.append((await self.queue(request, job_app))[0])
            except LedgersyncError as error:
                await self.session.rollback()
                outcomes.append(error)
        return outcomes

    async def queue_reconcile(
        self,
        target: SyncTarget,
        job_app: procrastinate.App,
        *,
        window_days: int,
        max_calls: int,
    ) -> list[SyncRun]:
        """Queue a reconciliation sweep of every connection the target covers: an accounts run
        (the whole chart: deleted accounts) and an invoices run (silent edits), both mode
        `reconcile`. A connection whose accounts run is already under way gets it back (any
        whole-chart sync finds the deletions); one whose invoices sweep is, gets that back.
        `SyncInProgress` (and nothing queued) when another invoice sync waits for a connection:
        the sweep holds the invoice lease, and two waiting invoice runs cannot both be queued."""
        connections = await self.connections_to_sync(target)
        ledger = LedgerRepository(self.session)
        for connection in connections:
            waiting = await ledger.unfinished_run(connection.id, "invoices")
            if waiting is not None and waiting.mode != SyncMode.RECONCILE:
                waiting_id = waiting.id  # read before the rollback expires it
                await self.session.rollback()
                raise SyncInProgress(
                    "An invoice sync of this connection is queued or running; sweep again "
                    "when it ends.",
                    sync_run_id=str(waiting_id),
                )
        await self.session.commit()
        accounts = AccountSyncRequest(
            organization_id=target.organization_id,
            provider=target.provider,
            trigger=RunTrigger.RECONCILE,
        )
        sweep: dict[str, object] = {"window_days": window_days, "max_calls": max_calls}
        runs: list[SyncRun] = []
        for connection in sorted(connections, key=lambda c: c.id):
            runs.append(
                await self._queue_one(ledger, connection, accounts, job_app, SyncMode.RECONCILE)
            )
            runs.append(
                await self._queue_one(
                    ledger, connection, accounts, job_app, SyncMode.RECONCILE, "invoices", sweep
                )
            )
        return runs

    async def _queue_one(
        self,
        ledger: LedgerRepository,
        connection: Connection,
        request: SyncRequest,
        job_app: procrastinate.App,
        mode: SyncMode | None = None,
        object_type: ObjectType | None = None,
        params: dict[str, object] | None = None,
    ) -> SyncRun:
        """Queue one connection's run of `request` (as `mode`, of `object_type`, with `params`
        when given: a sweep's), or give back the run of that object type already under way."""
        object_type = object_type or request.object_type
        for attempt in range(3):  # a concurrent request may queue, or its run end, meanwhile
            if attempt:
                # The refused insert rolled the session back, expiring the connection.
                await self.session.refresh(connection)
            existing = await ledger.unfinished_run(connection.id, object_type)
            if existing is not None and await self._replace_early(
                ledger, existing, request, job_app
            ):
                continue
            if existing is not None:
                await self.session.commit()
                await self._give_a_job_if_orphaned(ledger, existing, job_app)
                return existing
            incremental = not isinstance(request, InvoiceSyncRequest) or request.incremental
            run = new_run(
                connection,
                object_type,
                mode=mode or (SyncMode.INCREMENTAL if incremental else SyncMode.FULL),
                params=params if params is not None else request_params(request),
                status=RunStatus.QUEUED,
                trigger=request.trigger,
            )
            if not await ledger.add_queued_run(run):
                continue  # another request queued one first: return it
            await self.session.commit()
            try:
                job_id = await self._defer(job_app, run)
            except AlreadyQueued:
                # A job of this connection and type already waits (its run ended meanwhile,
                # or is being re-queued): this run would never be the one to run.
                await ledger.cancel_run(run.id, "Another background sync was queued first.")
                await self.session.commit()
                continue
            except BaseException:
                await ledger.cancel_run(run.id, "The sync could not be queued.")
                await self.session.commit()
                raise
            # The job may already have claimed the run (and named itself).
            await ledger.set_run_job(run.id, job_id, only_if_none=True)
            await self.session.commit()
            refreshed = await ledger.run_by_id(run.id)
            assert refreshed is not None
            await self.session.commit()
            return refreshed
        raise SyncInProgress(
            f"A {object_type} sync of this connection is being queued; try again shortly."
        )

    async def _replace_early(
        self,
        ledger: LedgerRepository,
        run: SyncRun,
        request: SyncRequest,
        job_app: procrastinate.App,
    ) -> bool:
        """Cancel a run the scheduler queued ahead for a later instant when someone asks for a
        sync now (they must not wait for the slot); whether it was cancelled. One a worker has
        already taken is left to run."""
        if (
            request.trigger == RunTrigger.SCHEDULE
            or run.trigger != RunTrigger.SCHEDULE
            or run.status != RunStatus.QUEUED
            or run.started_at <= utcnow()
        ):
            return False
        if run.job_id is not None and not await job_app.job_manager.cancel_job_by_id_async(
            run.job_id
        ):
            return False
        cancelled = await ledger.cancel_run(
            run.id, "Replaced by a sync asked for before its scheduled instant."
        )
        await self.session.commit()
        return cancelled

    async def _give_a_job_if_orphaned(
        self, ledger: LedgerRepository, run: SyncRun, job_app: procrastinate.App
    ) -> None:
        """A waiting run whose job is gone (its process died between finishing an attempt and
        queueing the next, or the in-memory queue that held it did) gets a new one."""
        if run.status == RunStatus.RUNNING:
            return  # a dead run's lease is taken over by its job, or released when stale
        if run.job_id is not None:
            jobs = await job_app.job_manager.list_jobs_async(id=run.job_id)
            if any(job.status in ("todo", "doing") for job in jobs):
                return
        try:
            job_id = await self._defer(job_app, run, schedule_at=_not_before(run))
        except AlreadyQueued:
            return
        await ledger.set_run_job(run.id, job_id)
        await self.session.commit()
        run.job_id = job_id
        logger.warning(
            "re-queued a sync run whose job was gone", extra={"sync_run_id": str(run.id)}
        )

    async def _defer(
        self, job_app: procrastinate.App, run: SyncRun, schedule_at: datetime | None = None
    ) -> int:
        lock = sync_lock(run.connection_id, run.object_type)
        return await defer_job(
            job_app,
            RUN_SYNC_TASK,
            queueing_lock=lock,
            lock=lock,
            schedule_at=schedule_at,
            run_id=str(run.id),
        )

    async def run_queued(self, claim: RunClaim, job_app: procrastinate.App) -> None:
        """Run a queued run, as the job attempt `claim` names (the body of `run_sync`). Idempotent:
        a run that ended, or that another job is responsible for, is left alone. Afterwards the
        run is queued again by itself when it paused on the daily limit (for `paused_until`) or
        failed on something temporary (after backoff, `SYNC_RETRY_ATTEMPTS` times at most)."""
        ledger = LedgerRepository(self.session)
        run = await ledger.run_by_id(claim.run_id)
        if run is None or not _waiting_for(run, claim):
            await self.session.commit()
            logger.info(
                "sync job has nothing to do",
                extra={"sync_run_id": str(claim.run_id), "job_id": claim.job_id},
            )
            return
        if run.paused_until is not None and run.paused_until > utcnow():
            await self._reschedule(ledger, job_app, run, run.paused_until)  # woke early
            return
        connection = await self.connections.get(run.connection_id)
        await self.session.commit()
        if connection is None or connection.status != ConnectionStatus.ACTIVE.value:
            await ledger.cancel_run(run.id, "The connection is no longer active.")
            await self.session.commit()
            return
        retries_left = max(0, self.factory.settings.sync_retry_attempts - (run.attempts or 0))
        claim = dataclasses.replace(claim, retries_left=retries_left)
        try:
            started = await self._start_claimed(connection, run, claim)
        except SyncInProgress:
            # A request's synchronous sync holds the lease: try again after it.
            delay = self.factory.settings.sync_retry_base_seconds or 1.0
            await self._reschedule(ledger, job_app, run, utcnow() + timedelta(seconds=delay))
            return
        except (RunNotClaimable, NoActiveConnection):
            return
        result = await started.run()
        await self._after(ledger, job_app, claim.run_id, result)

    async def _start_claimed(
        self, connection: Connection, run: SyncRun, claim: RunClaim
    ) -> StartedSync:
        service = self.factory.get_sync_service(connection)
        params = run.params or {}
        if run.object_type == "invoices" and run.mode == SyncMode.RECONCILE:
            settings = self.factory.settings
            return await service.start_reconcile(
                connection,
                window_days=int(params.get("window_days", settings.reconcile_window_days)),
                max_calls=int(params.get("max_calls", settings.reconcile_max_calls)),
                claim=claim,
            )
        if run.object_type == "invoices":
            return await service.start_invoices(
                connection,
                incremental=bool(params.get("incremental", True)),
                invoice_types=list(params.get("invoice_types") or []),
                months_back=int(params.get("months_back", 12)),
                claim=claim,
            )
        return await service.start_accounts(
            connection, account_types=list(params.get("account_types") or []) or None, claim=claim
        )

    async def _after(
        self,
        ledger: LedgerRepository,
        job_app: procrastinate.App,
        run_id: uuid.UUID,
        result: ConnectionSyncResult,
    ) -> None:
        """Queue the run again if it is to go on by itself."""
        run = await ledger.run_by_id(run_id)
        await self.session.commit()
        if run is None:
            return
        settings = self.factory.settings
        if run.status == RunStatus.PAUSED and run.paused_until is not None:
            await self._reschedule(ledger, job_app, run, run.paused_until)
        elif result.mode == SyncMode.PAUSED and result.resume_after is not None:
            # Not started: an earlier run's pause on the daily limit has not ended.
            await self._reschedule(ledger, job_app, run, result.resume_after)
        elif run.status == RunStatus.QUEUED and run.error is not None and run.finished_at is None:
            # Failed on something temporary with retries left (`SyncRuns` queued it again).
            delay = capped_backoff(
                run.attempts,
                base=settings.sync_retry_base_seconds,
                cap=settings.sync_retry_max_seconds,
            )
            delay += random.uniform(0, delay / 4)
            logger.warning(
                "background sync failed on something temporary; retrying",
                extra={"sync_run_id": str(run.id), "attempt": run.attempts, "delay_s": delay},
            )
            await self._reschedule(ledger, job_app, run, utcnow() + timedelta(seconds=delay))

    async def _reschedule(
        self,
        ledger: LedgerRepository,
        job_app: procrastinate.App,
        run: SyncRun,
        at: datetime,
        **values: Any,
    ) -> None:
        """A new job for the run at `at`. The job running now holds the run's lock, so the new
        one cannot start before this one has named it."""
        job_id = await self._defer(job_app, run, schedule_at=at)
        await ledger.set_run_job(run.id, job_id, **values)
        await self.session.commit()

    async def cancel(
        self, organization_id: uuid.UUID, run_id: uuid.UUID, job_app: procrastinate.App | None
    ) -> SyncRun:
        """Cancel a run that has not ended: a waiting one (queued, or paused until its resume)
        never runs; a running one stops at its next page boundary, keeping the pages it stored.
        `SyncRunFinished` when it had already ended. `job_app`: the queue holding the run's
        job, to cancel it there too; None when this process cannot reach it (another
        process's in-memory queue, on SQLite): the job then finds its run cancelled and does
        nothing."""
        ledger = LedgerRepository(self.session)
        run = await ledger.get_run(organization_id, run_id)
        if run is None:
            raise RecordNotFound(f"Sync run {run_id} does not exist.")
        if not await ledger.cancel_run(run_id, "Cancelled on request."):
            status = str((await ledger.run_by_id(run_id) or run).status)
            await self.session.rollback()
            raise SyncRunFinished(
                f"Sync run {run_id} already ended ({status}); there is nothing to cancel.",
                status=status,
            )
        await self.session.commit()
        if run.job_id is not None and job_app is not None:
            # A waiting job is cancelled (its queueing lock freed); a running one is stopped by
            # the run's fence instead.
            await job_app.job_manager.cancel_job_by_id_async(run.job_id)
        cancelled = await ledger.run_by_id(run_id)
        assert cancelled is not None
        await self.session.commit()
        return cancelled

    async def requeue_interrupted(self, job_app: procrastinate.App) -> list[uuid.UUID]:
        """Queue again the runs a previous process left unfinished (the in-process queue of
        SQLite did not outlive it): queued and running ones at once (resumed from their
        checkpoints), paused ones for `paused_until`."""
        ledger = LedgerRepository(self.session)
        runs = await ledger.unfinished_background_runs()
        for run in runs:
            await ledger.reset_interrupted_run(run.id)
        await self.session.commit()
        requeued = []
        for run in runs:
            refreshed = await ledger.run_by_id(run.id)
            assert refreshed is not None
            try:
                job_id = await self._defer(job_app, refreshed, schedule_at=_not_before(refreshed))
            except AlreadyQueued:
                continue
            await ledger.set_run_job(run.id, job_id)
            await self.session.commit()
            requeued.append(run.id)
        if requeued:
            logger.warning("re-queued interrupted sync runs", extra={"count": len(requeued)})
        return requeued

    # -- starting syncs ------------------------------------------------------------------------

    async def _start(self, connection: Connection, request: SyncRequest) -> StartedSync:
        """Take the connection's lease for `request` (its provider's sync service decides how)."""
        service = self.factory.get_sync_service(connection)
        if isinstance(request, InvoiceSyncRequest):
            return await service.start_invoices(
                connection,
                incremental=request.incremental,
                invoice_types=request.invoice_types,
                months_back=request.months_back,
            )
        return await service.start_accounts(connection, account_types=request.account_types)

    async def connections_to_sync(self, target: SyncTarget) -> list[Connection]:
        """The connections a sync request covers: the one asked for, or every active one."""
        organization_id = target.organization_id
        if target.connection_id is not None:
            chosen = [await self.connections.get_for_org(organization_id, target.connection_id)]
            if target.tenant_id is not None and chosen[0].tenant_id != target.tenant_id:
                raise InvalidSyncParameter(
                    f"Connection {target.connection_id} is not the connection to tenant "
                    f"{target.tenant_id}; give one of connection_id and tenant_id.",
                    parameter="tenant_id",
                )
        elif target.tenant_id is not None:
            found = await self.connections.get_by_tenant(
                organization_id, target.provider, target.tenant_id
            )
            if found is None:
                raise ConnectionNotFound(
                    f"No connection to tenant {target.tenant_id} in this organisation."
                )
            chosen = [found]
        else:
            chosen = await self.connections.list_for_org(organization_id)
        active = [c for c in chosen if c.status == ConnectionStatus.ACTIVE.value]
        if active:
            return active
        stale = [c for c in chosen if c.status == ConnectionStatus.NEEDS_REAUTH.value]
        if stale:
            raise ReauthorisationRequired(
                "Every Xero connection of this organisation must be authorised again.",
                connect_url=self.factory.connect_url(stale[0].provider, organization_id),
            )
        raise NoActiveConnection(
            "This organisation has no active accounting connection; connect Xero first."
        )

    async def _start_all(
        self,
        connections: Sequence[Connection],
        start: Callable[[Connection], Awaitable[StartedSync]],
    ) -> list[StartedSync]:
        """Every connection's lease, or none: a request answers for exactly what it started, so
        one busy connection (409) must not leave the others' runs going. Leases are taken in
        one order (by connection id) so concurrent requests over the same connections cannot
        each hold a part."""
        taken: dict[uuid.UUID, StartedSync] = {}
        try:
            for connection in sorted(connections, key=lambda c: c.id):
                taken[connection.id] = await start(connection)
        except BaseException:
            for run in taken.values():
                await run.release()
            raise
        return [taken[c.id] for c in connections]

    def _combine(
        self,
        object_type: ObjectType,
        connections: Sequence[Connection],
        parts: Sequence[ConnectionSyncResult],
        started: float,
    ) -> SyncResult:
        if parts and all(p.error == ReauthorisationRequired.code for p in parts):
            first = connections[0]
            raise ReauthorisationRequired(
                "The Xero connection must be authorised again by an admin.",
                connect_url=self.factory.connect_url(first.provider, first.organization_id),
            )
        return SyncResult.combine(object_type, parts, time.monotonic() - started)


def _waiting_for(run: SyncRun, claim: RunClaim) -> bool:
    """Whether the job attempt `claim` names is the one to run `run` now: the run waits and no
    other job is responsible for it, or the same job's earlier attempt left it running (that
    attempt's worker died)."""
    if run.status in (RunStatus.QUEUED, RunStatus.PAUSED):
        return run.job_id is None or run.job_id == claim.job_id
    return (
        run.status == RunStatus.RUNNING
        and run.job_id == claim.job_id
        and (run.job_attempt if run.job_attempt is not None else -1) < claim.job_attempt
    )


def _not_before(run: SyncRun) -> datetime | None:
    """When a queued run's new job may start: its resume (a paused run), its instant (one the
    scheduler queued ahead), or None (at once)."""
    now = utcnow()
    return next((at for at in (run.paused_until, run.started_at) if at and at > now), None)
