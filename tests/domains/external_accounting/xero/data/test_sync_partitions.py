"""A full sync paged as partitions side by side (issue 14): it equals Xero's ground truth
whatever a Xero user does while it pages, each partition resumes from its own checkpoint after a
failure (old single-keyset checkpoints too), and it stays inside Xero's limits as the sandbox
enforces them (5 in flight, N a minute: no 429)."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.settings import Settings
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.ledger.models import Invoice, SyncRun
from src.domains.external_accounting.xero.data.accounting_client import (
    TenantThrottle,
    XeroAccountingClient,
)
from src.domains.external_accounting.xero.data.call_limiter import (
    CallLimits,
    InProcessCallLimiter,
)
from src.domains.external_accounting.xero.data.sync_service import XeroSyncService
from src.xero_sandbox.server import RunningSandbox
from src.xero_sandbox.xero_dates import parse_xero_date
from tests.fixtures import (
    SANDBOX_CONFIG,
    clear_faults,
    connected_org,
    connected_to_new_tenant,
    empty_tables,
    inject_faults,
    invoices_url,
    reset_sandbox,
    reset_sandbox_stats,
    sandbox_stats,
    tighten_limits,
)
from tests.ground_truth import assert_complete, assert_matches_truth, ground_truth, in_scope

# Small pages, so a few hundred invoices make many partitions and splits.
PAGE_SIZE = 20


def _service(
    app: FastAPI, settings: Settings, page_size: int = PAGE_SIZE, **limits: Any
) -> XeroSyncService:
    """The real sync service on the app's HTTP client and token manager, its own limiter."""
    tuned = settings.model_copy(update=limits)
    throttle = TenantThrottle(limiter=InProcessCallLimiter(CallLimits.from_settings(tuned)))
    client = XeroAccountingClient(
        app.state.http_client, app.state.xero_auth_manager, tuned, throttle=throttle
    )
    return XeroSyncService(app.state.session_factory, client, page_size=page_size)


async def _stored(
    session_factory: async_sessionmaker[AsyncSession], connection: Connection
) -> dict[str, datetime]:
    """Each stored invoice's Xero id and the `UpdatedDateUTC` of the version stored."""
    async with session_factory() as session:
        rows = await session.execute(
            select(Invoice.provider_id, Invoice.provider_updated_at).where(
                Invoice.connection_id == connection.id
            )
        )
        return {
            provider_id: (updated if updated.tzinfo else updated.replace(tzinfo=UTC))
            for provider_id, updated in rows.all()
        }


def _invoice_calls(sandbox: RunningSandbox) -> int:
    calls: int = sandbox_stats(sandbox)["by_path"].get("/Invoices", 0)
    return calls


# -- equal to the ground truth under concurrent edits ----------------------------------------

EDITS = ("edit", "move", "pay", "create", "void")
edits = st.lists(
    st.tuples(
        st.sampled_from(EDITS),
        st.integers(min_value=0, max_value=10_000),  # which invoice
        st.integers(min_value=0, max_value=14),  # after how many of the sync's calls
    ),
    min_size=1,
    max_size=10,
)


async def _edit(
    http: httpx.AsyncClient, sandbox: RunningSandbox, tenant: str, action: str, pick: int
) -> str | None:
    """One Xero user's action while the sync pages; the invoice it touched (None: none)."""
    base = invoices_url(sandbox, tenant)
    if action == "create":
        day = (datetime.now(UTC) - timedelta(days=pick % 3000)).date().isoformat()
        body = {"type": "ACCREC", "status": "AUTHORISED", "date": day, "lines": 1 + pick % 3}
        return str((await http.post(base, json=body)).json()["InvoiceID"])
    truth = ground_truth(sandbox, tenant)
    eligible = {
        "edit": ("DRAFT", "SUBMITTED", "AUTHORISED"),
        "move": ("DRAFT", "SUBMITTED", "AUTHORISED"),
        "pay": ("AUTHORISED",),
        "void": ("SUBMITTED", "AUTHORISED"),
    }[action]
    candidates = sorted(i["InvoiceID"] for i in truth if i["Status"] in eligible)
    if not candidates:
        return None
    target = candidates[pick % len(candidates)]
    if action == "edit":
        response = await http.post(
            f"{base}/{target}/edit", json={"reference": f"mid-sync {pick}", "add_line": True}
        )
    elif action == "move":
        # Its date changes, so it moves from one date partition to another (or out of scope).
        day = (datetime.now(UTC) - timedelta(days=(pick * 37) % 3000)).date().isoformat()
        response = await http.post(f"{base}/{target}/edit", json={"date": day})
    else:
        response = await http.post(f"{base}/{target}/{action}")
    return target if response.status_code == 200 else None


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=edits, months_back=st.sampled_from([12, 36, 120]))
async def test_a_partitioned_full_sync_equals_the_ground_truth_under_concurrent_edits(
    app: FastAPI,
    client: httpx.AsyncClient,
    sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    steps: list[tuple[str, int, int]],
    months_back: int,
) -> None:
    """Edits land while the partitions page (each after a given number of the sync's calls):
    no invoice the edits left alone is skipped, each is counted once, and the incremental sync
    after it (what the cursor the full sync set is for) ends equal to Xero."""
    reset_sandbox(sandbox)
    await empty_tables(session_factory.kw["bind"])
    _, _, connections = await connected_org(client, session_factory)
    connection = connections[0]
    tenant = connection.tenant_id
    # Every call takes a little while, so the edits interleave with the pages.
    inject_faults(sandbox, path_contains="/Invoices", slow_rate=1.0, slow_seconds=0.03)
    before = ground_truth(sandbox, tenant)
    service = _service(app, settings)
    touched: set[str] = set()
    started = time.monotonic()

    async def edit_while_syncing() -> None:
        async with httpx.AsyncClient() as http:
            for action, pick, after_calls in sorted(steps, key=lambda s: s[2]):
                while _invoice_calls(sandbox) < after_calls and time.monotonic() - started < 20:
                    await asyncio.sleep(0.005)
                target = await _edit(http, sandbox, tenant, action, pick)
                if target:
                    touched.add(target)

    full, _ = await asyncio.gather(
        service.sync_invoices(connection, incremental=False, months_back=months_back),
        edit_while_syncing(),
    )
    clear_faults(sandbox)
    assert full.success, full
    stored = await _stored(session_factory, connection)
    # Nothing the edits left alone is skipped, and each invoice is counted once.
    untouched = {i["InvoiceID"] for i in before if in_scope(i, months_back)} - touched
    assert untouched <= set(stored), sorted(untouched - set(stored))
    assert full.count == len(stored)
    truth = ground_truth(sandbox, tenant)
    by_id = {i["InvoiceID"]: parse_xero_date(i["UpdatedDateUTC"]) for i in truth}
    assert all(updated <= by_id[i] for i, updated in stored.items())
    # What changed while it paged, the incremental sync from its cursor catches.
    incremental = await service.sync_invoices(connection, incremental=True)
    assert incremental.success, incremental
    assert incremental.mode == "incremental"
    held = set(await _stored(session_factory, connection))
    expected = {i["InvoiceID"] for i in truth if in_scope(i, months_back)}
    assert expected <= held, sorted(expected - held)
    await assert_matches_truth(session_factory, connection, truth, held)


# -- resuming each partition from its checkpoint ----------------------------------------------

INVOICES = 3000


async def _failed_mid_sync(
    app: FastAPI,
    client: httpx.AsyncClient,
    sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> tuple[Connection, SyncRun, set[str]]:
    """A full sync of 3,000 invoices in pages of 100 that fails after 12 calls (more 503s than
    every partition's retries); the failed run and what it kept."""
    _, _, connection = await connected_to_new_tenant(
        client, sandbox, session_factory, "Partitioned Ltd", INVOICES
    )
    inject_faults(sandbox, path_contains="/Invoices", skip_first=12, next_errors=[503] * 40)
    service = _service(app, settings, page_size=100)
    failed = await service.sync_invoices(connection, incremental=False, months_back=120)
    clear_faults(sandbox)
    assert (failed.success, failed.error) == (False, "provider_unavailable")
    async with session_factory() as session:
        run = await session.get(SyncRun, failed.sync_run_id)
    assert run is not None
    assert run.checkpoint is not None
    kept = set(await _stored(session_factory, connection))
    assert 0 < len(kept) < INVOICES
    # Whatever was kept is whole (every line item of each).
    await assert_matches_truth(
        session_factory, connection, ground_truth(sandbox, connection.tenant_id), kept
    )
    return connection, run, kept


async def test_each_partition_resumes_from_its_own_checkpoint_after_a_failure(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    connection, run, kept = await _failed_mid_sync(
        app, client, fresh_sandbox, session_factory, settings
    )
    assert run.checkpoint is not None
    partitions = run.checkpoint["partitions"]
    # The window split: several partitions, each with its own position.
    window = [p for p in partitions if p["phase"] == 0]
    assert len(window) >= 2
    positions = {p["since"] for p in window if not p["done"]}
    assert len(positions - {None}) >= 1
    # The ranges cover the window without overlapping: consecutive, from its start, open-ended.
    assert window[0]["date_from"] == run.checkpoint["window_start"]
    assert window[-1]["date_to"] is None
    for left, right in zip(window, window[1:], strict=False):
        assert datetime.fromisoformat(left["date_to"]) + timedelta(days=1) == (
            datetime.fromisoformat(right["date_from"])
        )
    reset_sandbox_stats(fresh_sandbox)
    resumed = await _service(app, settings, page_size=100).sync_invoices(
        connection, incremental=False, months_back=120
    )
    assert resumed.success, resumed
    assert resumed.mode == "resume"
    # From the checkpoint, not from scratch: what is left in pages, plus at most a re-read page
    # (the keyset's overlap) and a part-filled last page for each partition.
    left = INVOICES - len(kept)
    slack = 2 * (len(partitions) + 5)
    assert _invoice_calls(fresh_sandbox) <= math.ceil(left / 100) + slack
    assert resumed.count <= left + 100 * len(partitions)
    await assert_complete(session_factory, fresh_sandbox, connection)


async def test_a_checkpoint_of_the_single_keyset_sync_still_resumes(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """A run that failed before this release left `{"phase": 0, "since": ...}` (one keyset per
    phase): it resumes as the partition of that phase from that position."""
    connection, run, kept = await _failed_mid_sync(
        app, client, fresh_sandbox, session_factory, settings
    )
    assert run.checkpoint is not None
    window = [p for p in run.checkpoint["partitions"] if p["phase"] == 0 and not p["done"]]
    # The single keyset had got as far as the least advanced window partition.
    sinces = [p["since"] for p in window if p["since"]]
    since = min(sinces) if sinces else None
    old = {k: v for k, v in run.checkpoint.items() if k != "partitions"}
    old.update(phase=0, since=since)
    async with session_factory() as session:
        await session.execute(update(SyncRun).where(SyncRun.id == run.id).values(checkpoint=old))
        await session.commit()
    reset_sandbox_stats(fresh_sandbox)
    resumed = await _service(app, settings, page_size=100).sync_invoices(
        connection, incremental=False, months_back=120
    )
    assert resumed.success, resumed
    assert resumed.mode == "resume"
    if since is not None:
        # Not from scratch: the invoices changed before that position are not fetched again.
        assert resumed.count < INVOICES
    await assert_complete(session_factory, fresh_sandbox, connection)
    assert kept  # (what the failed run kept is part of the complete copy)


# -- inside Xero's limits as the sandbox enforces them ----------------------------------------


async def test_partitions_never_exceed_the_in_flight_or_minute_limit(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """The sandbox refuses a sixth call in flight and the 21st in its (compressed) minute with a
    429: a full sync of 3,000 invoices in pages of 50 meets none, and its calls really overlap."""
    minute_s, per_minute = 2.0, 20
    _, _, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Limited Ltd", INVOICES
    )
    runtime = fresh_sandbox.runtime
    tighten_limits(
        fresh_sandbox,
        minute_limit=per_minute,
        concurrent_limit=5,
        time_scale=60 / minute_s,
        reset_counters=True,
    )
    # Each call takes long enough that one partition could not start its minute's calls within
    # the minute: four or five side by side pay off (fewer would, were calls quicker).
    inject_faults(fresh_sandbox, path_contains="/Invoices", slow_rate=1.0, slow_seconds=0.4)
    reset_sandbox_stats(fresh_sandbox)
    service = _service(
        app,
        settings,
        page_size=50,
        xero_minute_limit=per_minute,
        xero_minute_seconds=minute_s,
        xero_concurrent_limit=5,
    )
    peak = 0
    done = asyncio.Event()

    async def watch_in_flight() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, runtime.limiter._counters(connection.tenant_id).in_flight)
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch_in_flight())
    started = time.monotonic()
    try:
        result = await service.sync_invoices(connection, incremental=False, months_back=120)
    finally:
        done.set()
        await watcher
        clear_faults(fresh_sandbox)
        tighten_limits(
            fresh_sandbox,
            minute_limit=SANDBOX_CONFIG.minute_limit,
            time_scale=1,
            reset_counters=True,
        )
    wall = time.monotonic() - started
    stats = sandbox_stats(fresh_sandbox)
    assert result.success, result
    assert stats["by_status"].get("429", 0) == 0, stats["by_status"]
    assert 3 <= peak <= 5, peak
    calls = _invoice_calls(fresh_sandbox)
    # Xero's minute bounds it: every full minute of calls but the last is waited out.
    assert wall >= (math.ceil(calls / per_minute) - 1) * minute_s
    await assert_complete(session_factory, fresh_sandbox, connection)
    assert uuid.UUID(str(result.sync_run_id))
