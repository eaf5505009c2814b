"""Operator commands: `ledgersync sync invoices|accounts ...` (a sync from the command line,
with its progress) and `ledgersync runs list|show|cancel`.

A sync started here takes the same path as one asked for over HTTP: a typed request to
`SyncsService.sync` (now, in this process, on the resources `ledgersync worker` opens) or
`SyncsService.queue` (`--background`: a queued run and a `syncs.run_sync` job, followed here until
it ends). Exit codes: 0 the sync succeeded, 1 it did not (failed, paused on Xero's daily limit,
cancelled), 2 bad input or a sync that could not start (one line on stderr)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.commands import run_in_transaction
from src.core.crypto import TokenCipher
from src.core.errors import LedgersyncError
from src.core.jobs import build_job_app, run_jobs_in_process
from src.core.settings import ConfigurationError, Settings, get_settings
from src.domains.external_accounting.base.factory import (
    RESOURCES,
    ServiceResources,
    service_resources,
)
from src.domains.external_accounting.base.sync import (
    AccountSyncRequest,
    ConnectionSyncResult,
    InvoiceSyncRequest,
    ObjectType,
    SyncResult,
)
from src.domains.external_accounting.connections.models import Provider
from src.domains.external_accounting.connections.repository import ConnectionRepository
from src.domains.external_accounting.ledger.models import INVOICE_TYPES, RunStatus, SyncRun
from src.domains.external_accounting.ledger.schemas import SyncRunOut
from src.domains.external_accounting.ledger.service import LedgerService
from src.domains.external_accounting.syncs.service import SYNC_QUEUE, SyncRequest, SyncsService

sync_app = typer.Typer(
    help="Sync an organisation's invoices or accounts from the command line.",
    no_args_is_help=True,
)
runs_app = typer.Typer(help="Sync runs: history, progress, cancelling.", no_args_is_help=True)

# How often a run's progress is read while it runs.
POLL_SECONDS = 0.25
ENDED = (RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED)

T = TypeVar("T")

BACKGROUND_HELP = (
    "Queue the sync as a background job (as `background=true` does) and follow it until it ends. "
    "On PostgreSQL a `ledgersync worker` runs it (start one if none runs). On the embedded SQLite "
    "default the queue lives in memory, inside one process, so this command runs the job itself, "
    "in-process, and stops when it ends (a run left paused resumes when `ledgersync serve` next "
    "starts)."
)


# -- sync ------------------------------------------------------------------------------------


@sync_app.command("invoices")
def sync_invoices(
    org: uuid.UUID = typer.Option(..., "--org", help="Organisation id."),
    connection: uuid.UUID | None = typer.Option(
        None, "--connection", help="Only this connection (default: every active one)."
    ),
    full: bool = typer.Option(
        False, "--full", help="A full sync over --months-back months (default: incremental)."
    ),
    months_back: int = typer.Option(
        12, "--months-back", min=1, max=120, help="A full sync's window, in months."
    ),
    background: bool = typer.Option(False, "--background", help=BACKGROUND_HELP),
) -> None:
    """Sync invoices now, showing pages, invoices, API calls, the phase and the time spent
    waiting on Xero's limits; then the SyncResult. Exit 0 success, 1 the sync did not succeed,
    2 bad input."""
    request = InvoiceSyncRequest(
        organization_id=org,
        provider=Provider.XERO,
        connection_id=connection,
        incremental=not full,
        invoice_types=sorted(INVOICE_TYPES),
        months_back=months_back,
    )
    _sync(request, background)


@sync_app.command("accounts")
def sync_accounts(
    org: uuid.UUID = typer.Option(..., "--org", help="Organisation id."),
    connection: uuid.UUID | None = typer.Option(
        None, "--connection", help="Only this connection (default: every active one)."
    ),
    full: bool = typer.Option(
        False, "--full", help="Accepted for symmetry: an accounts sync always reads them all."
    ),
    background: bool = typer.Option(False, "--background", help=BACKGROUND_HELP),
) -> None:
    """Sync the chart of accounts now, with its progress; then the SyncResult. Exit 0 success,
    1 the sync did not succeed, 2 bad input."""
    request = AccountSyncRequest(
        organization_id=org, provider=Provider.XERO, connection_id=connection
    )
    _sync(request, background)


def _sync(request: SyncRequest, background: bool) -> None:
    settings = _service_settings()
    console = Console(stderr=True)
    follow = _follow_in_background if background else _sync_now
    result = _run_command(follow(settings, request, console))
    typer.echo(result.model_dump_json(indent=2))
    if not result.success:
        for part in result.connections:
            if part.resume_after is not None:
                console.print(
                    f"{part.tenant_name}: paused on Xero's daily limit; it resumes by itself "
                    f"after {part.resume_after.isoformat()}"
                )
        raise typer.Exit(1)


async def _sync_now(settings: Settings, request: SyncRequest, console: Console) -> SyncResult:
    """`SyncsService.sync` in this process, its runs' progress read while it runs."""
    async with _resources(settings) as resources:
        bars = RunBars(console, request.object_type)
        with bars.shown():
            async with resources.session_factory() as session:
                service = SyncsService(session, resources.factory)
                syncing = asyncio.create_task(service.sync(request, on_started=bars.follow))
                while not syncing.done():
                    await asyncio.wait({syncing}, timeout=POLL_SECONDS)
                    await bars.refresh(resources.session_factory)
                return syncing.result()


async def _follow_in_background(
    settings: Settings, request: SyncRequest, console: Console
) -> SyncResult:
    """`SyncsService.queue`, then the runs' progress until each has ended (or paused until a
    resume of its own). On SQLite this process's in-memory queue has a worker of its own (sync
    jobs only: the periodic ones are `serve`'s)."""
    started = time.monotonic()
    async with _resources(settings) as resources:
        job_app = build_job_app(settings)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(job_app.open_async())
            if settings.is_sqlite:
                await stack.enter_async_context(
                    run_jobs_in_process(
                        job_app,
                        name="cli",
                        queues=[SYNC_QUEUE],
                        additional_context={RESOURCES: resources},
                    )
                )
            async with resources.session_factory() as session:
                runs = await SyncsService(session, resources.factory).queue(request, job_app)
            for run in runs:
                console.print(f"queued sync run {run.id} ({run.status})")
            if not settings.is_sqlite:
                console.print("a `ledgersync worker` runs it; following its progress")
            bars = RunBars(console, request.object_type)
            bars.follow([run.id for run in runs])
            with bars.shown():
                while True:
                    current = await bars.refresh(resources.session_factory)
                    if all(_settled(run) for run in current):
                        break
                    await asyncio.sleep(POLL_SECONDS)
        return _result_of(request.object_type, current, bars.tenants, time.monotonic() - started)


def _settled(run: SyncRun) -> bool:
    """Ended, or paused until a resume of its own (which may be tomorrow)."""
    return run.status in ENDED or (run.status == RunStatus.PAUSED and run.paused_until is not None)


def _result_of(
    object_type: ObjectType, runs: list[SyncRun], tenants: dict[uuid.UUID, str], duration: float
) -> SyncResult:
    """The SyncResult a synchronous sync would have answered, from the runs as they ended."""
    parts = [
        ConnectionSyncResult(
            connection_id=run.connection_id,
            tenant_name=tenants.get(run.connection_id, ""),
            sync_run_id=run.id,
            success=run.status == RunStatus.SUCCESS,
            mode=run.mode,
            count=run.count,
            created=run.created,
            updated=run.updated,
            unchanged=run.unchanged,
            api_calls=run.api_calls,
            duration_seconds=_duration(run) or 0.0,
            last_modified=run.last_modified,
            error=run.error,
            error_detail=run.error_detail,
            resume_after=run.paused_until if run.status == RunStatus.PAUSED else None,
        )
        for run in runs
    ]
    return SyncResult.combine(object_type, parts, duration)


class RunBars:
    """One progress bar per sync run, read from its row (as `GET /sync-runs/{id}` shows it):
    pages, records so far, API calls, the phase and the seconds waited on Xero's limits."""

    def __init__(self, console: Console, object_type: ObjectType) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            TextColumn("pages {task.fields[pages]}"),
            TextColumn(f"{{task.fields[count]}} {object_type}"),
            TextColumn("API calls {task.fields[api_calls]}"),
            TextColumn("phase {task.fields[phase]}"),
            TextColumn("waiting on limits {task.fields[waited]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.run_ids: list[uuid.UUID] = []
        self.tasks: dict[uuid.UUID, TaskID] = {}
        self.tenants: dict[uuid.UUID, str] = {}

    @contextmanager
    def shown(self) -> Iterator[None]:
        """Drawn from the first run on (nothing at all when the sync did not start), until the
        block ends."""
        try:
            yield
        finally:
            if self.tasks:
                self.progress.stop()

    def follow(self, run_ids: list[uuid.UUID]) -> None:
        """Show these runs from the next refresh on."""
        self.run_ids.extend(run_id for run_id in run_ids if run_id not in self.run_ids)

    async def refresh(self, session_factory: async_sessionmaker[AsyncSession]) -> list[SyncRun]:
        """Read every followed run afresh and redraw its bar; the runs read."""
        runs: list[SyncRun] = []
        async with session_factory() as session:
            ledger = LedgerService(session)
            for run_id in self.run_ids:
                run = await ledger.find_run(run_id)
                if run_id not in self.tasks:
                    connection = await ConnectionRepository(session).get(run.connection_id)
                    name = connection.tenant_name if connection else str(run.connection_id)
                    self.tenants[run.connection_id] = name
                    if not self.tasks:
                        self.progress.start()
                    self.tasks[run_id] = self.progress.add_task(name, total=None, **_fields(run))
                done = _settled(run)
                self.progress.update(
                    self.tasks[run_id],
                    total=1 if done else None,
                    completed=1 if done else 0,
                    **_fields(run),
                )
                runs.append(run)
            await session.commit()
        return runs


def _fields(run: SyncRun) -> dict[str, Any]:
    retrying = run.status == RunStatus.QUEUED and run.error is not None
    status = f"retry {run.attempts}" if retrying else str(run.status)
    return {
        "status": status,
        "pages": run.pages,
        "count": run.count,
        "api_calls": run.api_calls,
        "phase": run.phase or "-",
        "waited": f"{run.limit_wait_seconds:.1f} s",
    }


# -- runs ------------------------------------------------------------------------------------


@runs_app.command("list")
def list_runs(
    org: uuid.UUID | None = typer.Option(
        None, "--org", help="Only this organisation's runs (default: every organisation's)."
    ),
    limit: int = typer.Option(20, "--limit", min=1, max=500, help="How many runs."),
) -> None:
    """Recent sync runs, newest first."""
    runs = run_in_transaction(lambda s: LedgerService(s).list_runs(org, limit))
    typer.echo(
        f"{'id':<36}  {'started (UTC)':<19}  {'connection':<36}  {'object':<8}  {'mode':<11}  "
        f"{'status':<9}  {'pages':>5}  {'count':>7}  {'calls':>5}  error"
    )
    for run in runs:
        typer.echo(
            f"{run.id!s:<36}  {run.started_at:%Y-%m-%d %H:%M:%S}  {run.connection_id!s:<36}  "
            f"{run.object_type:<8}  {run.mode:<11}  {run.status!s:<9}  {run.pages:>5}  "
            f"{run.count:>7}  {run.api_calls:>5}  {run.error or ''}"
        )


@runs_app.command("show")
def show_run(run_id: uuid.UUID = typer.Argument(..., help="The sync run's id.")) -> None:
    """One sync run as `GET /sync-runs/{id}` shows it, with its live progress, as JSON."""
    run = run_in_transaction(lambda s: LedgerService(s).find_run(run_id))
    typer.echo(_run_out(run).model_dump_json(indent=2))


@runs_app.command("cancel")
def cancel_run(run_id: uuid.UUID = typer.Argument(..., help="The sync run's id.")) -> None:
    """Cancel a run that has not ended: a queued one never runs, a running one stops at its
    next page boundary (keeping the pages it stored). Exit 2 if it had already ended."""
    settings = _service_settings()

    async def cancel() -> SyncRun:
        async with _resources(settings) as resources, contextlib.AsyncExitStack() as stack:
            # On SQLite the run's job waits in the memory of the process that queued it: the
            # run's row is cancelled, and that job, when it comes, finds nothing to do.
            job_app = None if settings.is_sqlite else build_job_app(settings)
            if job_app is not None:
                await stack.enter_async_context(job_app.open_async())
            async with resources.session_factory() as session:
                run = await LedgerService(session).find_run(run_id)
                return await SyncsService(session, resources.factory).cancel(
                    run.organization_id, run.id, job_app
                )

    cancelled = _run_command(cancel())
    typer.echo(f"cancelled sync run {cancelled.id}")


# -- shared ----------------------------------------------------------------------------------


def _service_settings() -> Settings:
    """The settings, refused with one line when a sync could not run on them."""
    settings = get_settings()
    try:
        settings.require_service_settings()
        TokenCipher.from_settings(settings)
    except ConfigurationError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    return settings


@asynccontextmanager
async def _resources(settings: Settings) -> AsyncIterator[ServiceResources]:
    """What `ledgersync worker` opens for its jobs: the same engine, HTTP client, call limiter
    (shared with the workers through Redis when REDIS_URL is set) and token manager."""
    async with service_resources(settings, TokenCipher.from_settings(settings)) as resources:
        yield resources


def _run_command(work: Awaitable[T]) -> T:
    """Run `work`; typed errors (a sync that cannot start, an unknown run) exit 2 with their
    one-line detail."""

    async def main() -> T:
        return await work

    try:
        return asyncio.run(main())
    except LedgersyncError as error:
        typer.echo(f"error: {error.detail}", err=True)
        raise typer.Exit(2) from None


def _duration(run: SyncRun) -> float | None:
    if run.finished_at is None:
        return None
    return round((run.finished_at - run.started_at).total_seconds(), 3)


def _run_out(run: SyncRun) -> SyncRunOut:
    out = SyncRunOut.model_validate(run)
    out.duration_seconds = _duration(run)
    return out
