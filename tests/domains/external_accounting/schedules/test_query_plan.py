"""What a scheduler tick asks of each connection's runs is answered from a few index entries,
never by walking the run history: otherwise every tick grows with every run ever made (for
1,000 connections after a simulated day, bench/fleet.py: 1.0 s for the sync scheduler's query,
0.6 s for the sweep scheduler's, 82 ms for each batch of 200 due syncs it queues).

Each repository call is made for real; the statements it executed are then planned again with
the same parameters, on both databases, as each would plan them for a long history (on
PostgreSQL with sequential scans off, since its planner rightly scans a test table's few
rows)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from src.domains.external_accounting.ledger.repository import LedgerRepository
from src.domains.external_accounting.reconciliation.repository import ReconcileRepository
from src.domains.external_accounting.schedules.repository import ScheduleRepository

Call = Callable[[AsyncSession], Awaitable[object]]
SOME_CONNECTION = uuid.uuid4()

CALLS: dict[str, tuple[Call, set[str]]] = {
    # The newest slot run, the newest requested one, busy (one test per status, each its
    # unique index), the latest pause.
    "sync scheduler": (
        lambda s: ScheduleRepository(s).scheduling_states(),
        {
            "ix_sync_runs_slot_started",
            "ix_sync_runs_requested_started",
            "uq_sync_runs_one_running",
            "uq_sync_runs_one_queued",
            "ix_sync_runs_paused_until",
        },
    ),
    "sweep scheduler": (
        lambda s: ReconcileRepository(s).sweep_states(),
        {"ix_sync_runs_sweep_started"},
    ),
    # What queueing a batch of due syncs, and one request, look for.
    "unfinished pairs": (
        lambda s: LedgerRepository(s).unfinished_pairs([SOME_CONNECTION]),
        {"ix_sync_runs_maybe_unfinished"},
    ),
    "unfinished run": (
        lambda s: LedgerRepository(s).unfinished_run(SOME_CONNECTION, "invoices"),
        {"ix_sync_runs_maybe_unfinished"},
    ),
}


async def _plans(engine: AsyncEngine, call: Call) -> str:
    """The plans of the statements `call` executed, re-planned with their parameters."""
    executed: list[tuple[str, Any]] = []

    def record(*args: Any) -> None:
        _connection, _cursor, statement, parameters, _context, _many = args
        executed.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        async with async_sessionmaker(engine)() as session:
            await call(session)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    sqlite = engine.dialect.name == "sqlite"
    lines = []
    async with engine.connect() as connection:
        if not sqlite:
            await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        for statement, parameters in executed:
            prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
            rows = await connection.exec_driver_sql(prefix + statement, parameters)
            lines += [str(row[-1] if sqlite else row[0]) for row in rows]
    assert lines, "the call executed nothing"
    return "\n".join(lines)


@pytest.mark.parametrize("name", list(CALLS))
async def test_a_tick_reads_each_answer_from_its_partial_index(
    engine: AsyncEngine, name: str
) -> None:
    call, indexes = CALLS[name]
    plan = await _plans(engine, call)
    used = {index for index in indexes if index in plan}
    assert used == indexes, plan
    # The general index would mean walking a connection's whole history for one answer.
    assert "ix_sync_runs_connection_type_started" not in plan, plan
    assert "SCAN sync_runs" not in plan, plan
    assert "Seq Scan on sync_runs" not in plan, plan
