"""Every fault the sandbox can inject, during a full sync over real HTTP: each ends in a complete
sync, or in a clean failure that keeps its progress and a rerun that completes. Whatever happens,
no invoice is ever stored without all its line items."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.settings import Settings
from src.domains.external_accounting.ledger.models import SyncRun
from src.xero_sandbox.server import RunningSandbox
from tests.fixtures import (
    SANDBOX_CONFIG,
    app_client,
    clear_faults,
    connected_to_new_tenant,
    inject_faults,
    injected_faults,
    running_app,
    service_environment,
    sync,
    tighten_limits,
)
from tests.ground_truth import (
    assert_complete,
    assert_matches_truth,
    ground_truth,
    stored_invoice_ids,
)

INVOICES = 2500  # three pages in phase 1
# Short enough for a test to wait out, long enough for a page of 1,000 invoices on a busy machine
# (at 0.5 s an ordinary page timed out under load, one attempt more than a fault's retries allow).
SHORT_TIMEOUT_S = 2.5


def _storm(problem: str) -> dict[str, Any]:
    return {"rate_limit_burst": 4, "rate_limit_problem": problem, "rate_limit_retry_after": 0}


# Each fault starts after the first page, so it strikes mid-sync.
RECOVERABLE: dict[str, dict[str, Any]] = {
    "429 storm (minute)": _storm("minute"),
    "429 storm (concurrent)": _storm("concurrent"),
    "429 storm (app minute)": _storm("appminute"),
    "5xx burst": {"next_errors": [500, 502, 503, 504]},
    "responses slower than the timeout": {"next_slow": 2, "slow_seconds": SHORT_TIMEOUT_S + 1},
    "connections dropped mid-body": {"next_drops": 3},
    "malformed JSON": {"next_malformed": 3},
    "token expires mid-sync": {"expire_tokens_after": 1},
}


def _short_timeout(settings: Settings) -> Settings:
    """A short HTTP timeout, so a slow response is a timeout within the test."""
    return settings.model_copy(update={"http_timeout_seconds": SHORT_TIMEOUT_S})


@pytest.mark.parametrize("fault", list(RECOVERABLE), ids=list(RECOVERABLE))
async def test_a_recoverable_fault_mid_sync_still_ends_complete(
    fault: str,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Faulty Ltd", INVOICES
    )
    inject_faults(fresh_sandbox, path_contains="/Invoices", skip_first=1, **RECOVERABLE[fault])
    async with running_app(_short_timeout(settings)) as app, app_client(app) as service:
        result = await sync(
            service, key, org_id, connection_id=str(connection.id), months_back="120"
        )
    injected = injected_faults(fresh_sandbox)
    assert sum(injected.values()) >= 1, injected  # the fault really struck
    assert result["success"] is True, result
    await assert_complete(session_factory, fresh_sandbox, connection)


async def test_an_outage_longer_than_the_retries_fails_cleanly_and_the_rerun_completes(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Down Ltd", INVOICES
    )
    # After each phase's first page, more 503s than every partition's retries take.
    inject_faults(fresh_sandbox, path_contains="/Invoices", skip_first=2, next_errors=[503] * 25)
    async with running_app(_short_timeout(settings)) as app, app_client(app) as service:
        failed = await sync(
            service, key, org_id, connection_id=str(connection.id), months_back="120"
        )
        assert (failed["success"], failed["error"]) == (False, "provider_unavailable")
        kept = await stored_invoice_ids(session_factory, connection.id)
        # The window's first page before the outage (phase 2 is empty: the window covers the
        # whole history).
        assert len(kept) == 1000
        truth = ground_truth(fresh_sandbox, connection.tenant_id)
        # What was kept is whole: every stored invoice has exactly Xero's line items.
        await assert_matches_truth(session_factory, connection, truth, kept)
        clear_faults(fresh_sandbox)
        rerun = await sync(
            service, key, org_id, connection_id=str(connection.id), months_back="120"
        )
    assert rerun["success"] is True
    assert rerun["connections"][0]["mode"] == "resume"
    await assert_complete(session_factory, fresh_sandbox, connection)


async def test_a_sync_killed_mid_run_resumes_from_its_checkpoint(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """kill -9 (a crash or a deploy) between pages: the dead run's lease is released once it has
    stopped beating, and the next sync resumes where it stopped, nothing lost or duplicated."""
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Killed Ltd", 5000
    )
    # One call per Xero minute of half a second: pages arrive slowly enough to kill between them.
    tighten_limits(fresh_sandbox, minute_limit=1, time_scale=120)
    env = {
        **os.environ,
        **service_environment(
            settings,
            fresh_sandbox,
            LOG_LEVEL="WARNING",
            XERO_MINUTE_LIMIT="1",
            XERO_MINUTE_SECONDS="0.5",
        ),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.domains.external_accounting.xero.data.sync_worker_process",
         str(connection.id)],
        env=env, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while len(await stored_invoice_ids(session_factory, connection.id)) < 2000:
            assert worker.poll() is None, worker.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the worker stored nothing"
            await asyncio.sleep(0.05)
    finally:
        worker.kill()  # SIGKILL: no chance to record anything
        worker.wait()
        tighten_limits(fresh_sandbox, minute_limit=SANDBOX_CONFIG.minute_limit, time_scale=1)
    kept = await stored_invoice_ids(session_factory, connection.id)
    assert 2000 <= len(kept) < 5000
    truth = ground_truth(fresh_sandbox, connection.tenant_id)
    await assert_matches_truth(session_factory, connection, truth, kept)  # whole invoices only
    async with session_factory() as session:
        dead = (await session.execute(select(SyncRun))).scalar_one()
        assert dead.status == "running"  # the process died without a word
        # Fifteen minutes without a heartbeat later (the lease's timeout, not waited here):
        dead.heartbeat_at -= timedelta(minutes=16)
        await session.commit()
    resumed = await sync(client, key, org_id, connection_id=str(connection.id), months_back="120")
    assert resumed["success"] is True
    assert resumed["connections"][0]["mode"] == "resume"
    assert resumed["count"] <= 5000 - len(kept) + 1000  # from the checkpoint, not from scratch
    await assert_complete(session_factory, fresh_sandbox, connection)
    async with session_factory() as session:
        statuses = sorted((await session.execute(select(SyncRun.status, SyncRun.error))).all())
    assert statuses == [("failed", "abandoned"), ("success", None)]
