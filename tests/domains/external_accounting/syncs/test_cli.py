"""`ledgersync sync invoices|accounts` and `ledgersync runs list|show|cancel`, run as an operator
runs them: the real command in a subprocess, on the tests' database and sandbox. Background syncs
run in the command's own process on SQLite and on a `ledgersync worker` on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from src.cli import app as cli
from src.core.jobs import build_job_app
from src.core.settings import Settings, get_settings
from src.domains.external_accounting.base.sync import InvoiceSyncRequest
from src.domains.external_accounting.connections.models import Provider
from src.domains.external_accounting.ledger.models import RunStatus, SyncRun
from src.domains.external_accounting.ledger.repository import LedgerRepository
from src.domains.external_accounting.syncs.service import SyncsService
from src.xero_sandbox.server import RunningSandbox
from tests.fixtures import (
    FAST_JOBS_ENVIRONMENT,
    ON_POSTGRES,
    connected_to_new_tenant,
    inject_faults,
    service_environment,
)
from tests.ground_truth import assert_complete

LEDGERSYNC = Path(sys.executable).with_name("ledgersync")
REPOSITORY = Path(__file__).resolve().parents[4]
INVOICES = 2500  # three pages of 1,000


@pytest.fixture
def environment(settings: Settings, sandbox: RunningSandbox) -> dict[str, str]:
    """The environment of an operator's shell on the tests' database and sandbox."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith(("JOB_", "DATABASE_URL", "XERO_", "SYNC_"))
    }
    return {
        **inherited,
        **service_environment(settings, sandbox),
        **FAST_JOBS_ENVIRONMENT,
        "PYTHONPATH": str(REPOSITORY),
        "COLUMNS": "240",  # rich's width off a terminal: the progress line whole
    }


def ledgersync(
    environment: dict[str, str], cwd: Path, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LEDGERSYNC), *args],
        env=environment,
        cwd=cwd,  # no `.env` of the checkout
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def worker(environment: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], None]]:
    """Starts one `ledgersync worker` (PostgreSQL; on SQLite the command runs the job itself)."""
    started: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        if not ON_POSTGRES:
            return
        log = (tmp_path / "worker.log").open("wb")
        started.append(
            subprocess.Popen(
                [str(LEDGERSYNC), "worker"],
                env=environment,
                cwd=tmp_path,
                stdout=log,
                stderr=log,
            )
        )

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr, done.stderr


async def _pages(session_factory: async_sessionmaker[AsyncSession], run_id: str) -> int:
    """The pages a run stored, as its row says (a full sync pages partitions side by side, so
    how many depends on how they split)."""
    async with session_factory() as session:
        run = await session.get(SyncRun, uuid.UUID(run_id))
    assert run is not None
    assert run.pages >= 3  # 2,500 invoices: at least three pages of 1,000
    return run.pages


async def test_a_full_sync_runs_in_the_command_with_its_progress(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    environment: dict[str, str],
    tmp_path: Path,
) -> None:
    org_id, _, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Command Ltd", INVOICES
    )
    done = ledgersync(
        environment,
        tmp_path,
        *("sync", "invoices", "--org", str(org_id), "--connection", str(connection.id)),
        *("--full", "--months-back", "120"),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["object_type"] == "invoices"
    assert result["success"] is True
    assert result["count"] == INVOICES
    assert [c["mode"] for c in result["connections"]] == ["full"]
    # The progress bar's last state: the run's pages, invoices and calls, read from its row.
    assert "Command Ltd" in done.stderr
    assert f"pages {await _pages(session_factory, result['sync_run_id'])}" in done.stderr
    assert f"{INVOICES} invoices" in done.stderr
    assert "waiting on limits" in done.stderr
    await assert_complete(session_factory, fresh_sandbox, connection)


async def test_bad_input_is_one_line_and_exit_2(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    environment: dict[str, str],
    tmp_path: Path,
) -> None:
    org_id, _, _ = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Input Ltd", 10
    )
    nobody = ledgersync(environment, tmp_path, "sync", "invoices", "--org", str(uuid.uuid4()))
    assert nobody.returncode == 2
    assert nobody.stderr.strip() == (
        "error: This organisation has no active accounting connection; connect Xero first."
    )
    stranger = ledgersync(
        environment,
        tmp_path,
        *("sync", "invoices", "--org", str(org_id), "--connection", str(uuid.uuid4())),
    )
    assert stranger.returncode == 2
    assert len(stranger.stderr.strip().splitlines()) == 1
    assert stranger.stderr.startswith("error: ")
    for done in (nobody, stranger):
        no_traceback(done)


def test_bad_arguments_and_settings_are_one_line_and_exit_2(environment: dict[str, str]) -> None:
    """The same command in this process (CliRunner, quicker than a new interpreter)."""
    runner = CliRunner(env=environment)
    get_settings.cache_clear()
    try:
        not_an_id = runner.invoke(cli, ["sync", "accounts", "--org", "acme"])
        assert not_an_id.exit_code == 2
        assert "Invalid value for '--org'" in not_an_id.output
        too_many = runner.invoke(cli, ["runs", "list", "--limit", "0"])
        assert too_many.exit_code == 2
        unknown_run = runner.invoke(cli, ["runs", "show", str(uuid.uuid4())])
        assert unknown_run.exit_code == 2
        assert unknown_run.stderr.startswith("error: Sync run ")
        assert unknown_run.stderr.strip().endswith("does not exist.")
        get_settings.cache_clear()
        unconfigured = CliRunner(env={**environment, "TOKEN_ENCRYPTION_KEYS": ""}).invoke(
            cli, ["sync", "invoices", "--org", str(uuid.uuid4())]
        )
        assert unconfigured.exit_code == 2
        assert unconfigured.stderr.startswith("error: ")
        assert len(unconfigured.stderr.strip().splitlines()) == 1
    finally:
        get_settings.cache_clear()


async def test_a_failed_sync_exits_1_and_a_successful_one_0(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    environment: dict[str, str],
    tmp_path: Path,
) -> None:
    org_id, _, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Outage Ltd", 10
    )
    inject_faults(fresh_sandbox, path_contains="/Invoices", next_errors=[503] * 20)
    done = ledgersync(
        environment,
        tmp_path,
        *("sync", "invoices", "--org", str(org_id), "--connection", str(connection.id)),
    )
    assert done.returncode == 1, done.stderr
    no_traceback(done)
    result = json.loads(done.stdout)
    assert result["success"] is False
    assert result["error"] == "provider_unavailable"
    # Xero's accounts still answer: that sync succeeds.
    accounts = ledgersync(
        environment,
        tmp_path,
        *("sync", "accounts", "--org", str(org_id), "--connection", str(connection.id)),
    )
    assert accounts.returncode == 0, accounts.stderr
    synced = json.loads(accounts.stdout)
    assert synced["object_type"] == "accounts"
    assert synced["success"] is True
    assert synced["count"] > 0


async def test_a_background_sync_is_followed_until_it_ends(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    environment: dict[str, str],
    worker: Callable[[], None],
    tmp_path: Path,
) -> None:
    org_id, _, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Queue Ltd", INVOICES
    )
    worker()
    done = ledgersync(
        environment,
        tmp_path,
        *("sync", "invoices", "--org", str(org_id), "--connection", str(connection.id)),
        *("--full", "--months-back", "120", "--background"),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["success"] is True
    assert result["count"] == INVOICES
    run_id = result["sync_run_id"]
    assert f"queued sync run {run_id}" in done.stderr
    assert f"pages {await _pages(session_factory, run_id)}" in done.stderr
    await assert_complete(session_factory, fresh_sandbox, connection)

    shown = ledgersync(environment, tmp_path, "runs", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert run["status"] == "success"
    assert run["params"]["background"] is True
    assert run["pages"] >= 3
    assert run["duration_seconds"] is not None


async def _queue_without_a_worker(
    app: FastAPI, settings: Settings, org_id: uuid.UUID, connection_id: uuid.UUID
) -> SyncRun:
    """A queued run nobody runs yet: its job waits in a queue no worker reads."""
    resources = app.state.resources
    job_app = build_job_app(settings)
    async with job_app.open_async(), resources.session_factory() as session:
        runs = await SyncsService(session, resources.factory).queue(
            InvoiceSyncRequest(
                organization_id=org_id, provider=Provider.XERO, connection_id=connection_id
            ),
            job_app,
        )
    return runs[0]


async def test_runs_cancel_stops_a_queued_run_and_refuses_an_ended_one(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    environment: dict[str, str],
    tmp_path: Path,
) -> None:
    org_id, _, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Cancel Ltd", 10
    )
    queued = await _queue_without_a_worker(app, settings, org_id, connection.id)
    assert queued.status == RunStatus.QUEUED
    done = ledgersync(environment, tmp_path, "runs", "cancel", str(queued.id))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"cancelled sync run {queued.id}"
    async with session_factory() as session:
        run = await LedgerRepository(session).run_by_id(queued.id)
    assert run is not None
    assert run.status == RunStatus.CANCELLED
    again = ledgersync(environment, tmp_path, "runs", "cancel", str(queued.id))
    assert again.returncode == 2
    assert again.stderr.strip() == (
        f"error: Sync run {queued.id} already ended (cancelled); there is nothing to cancel."
    )
    no_traceback(again)
    listed = ledgersync(environment, tmp_path, "runs", "list", "--limit", "1")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()  # every organisation's, newest first
    assert header.split()[:3] == ["id", "started", "(UTC)"]
    assert row.startswith(str(queued.id))
    assert " cancelled " in row


async def test_a_cancelled_background_sync_exits_1_keeping_its_pages(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    environment: dict[str, str],
    worker: Callable[[], None],
    tmp_path: Path,
) -> None:
    org_id, _, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Stop Ltd", INVOICES
    )
    inject_faults(fresh_sandbox, path_contains="/Invoices", slow_rate=1.0, slow_seconds=0.5)
    worker()
    following = subprocess.Popen(
        [str(LEDGERSYNC), "sync", "invoices", "--org", str(org_id)]
        + ["--connection", str(connection.id), "--full", "--months-back", "120", "--background"],
        env=environment,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run = await _first_page_stored(session_factory, connection.id, timeout=30)
        # As `runs cancel` does (a new interpreter would start too slowly to catch the run).
        async with session_factory() as session:
            await SyncsService(session, app.state.resources.factory).cancel(org_id, run.id, None)
        out, err = following.communicate(timeout=30)
    finally:
        if following.poll() is None:
            following.kill()
            following.communicate()
    assert following.returncode == 1, err
    result = json.loads(out)
    assert result["success"] is False
    assert result["error"] == "cancelled"
    assert 1000 <= result["count"] < INVOICES  # stopped at a page boundary, its pages kept


async def _first_page_stored(
    session_factory: async_sessionmaker[AsyncSession], connection_id: uuid.UUID, timeout: float
) -> SyncRun:
    deadline = time.monotonic() + timeout
    while True:
        async with session_factory() as session:
            runs = await LedgerRepository(session).list_runs(None, 10)
        mine = [r for r in runs if r.connection_id == connection_id and r.pages >= 1]
        if mine:
            return mine[0]
        assert time.monotonic() < deadline, "no page stored"
        await asyncio.sleep(0.1)
