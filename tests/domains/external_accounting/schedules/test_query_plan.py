"""The schedulers' queries read the few index entries they need of each connection's runs,
never the run history: otherwise every tick grows with every run ever made (for 1,000
connections after a simulated day, bench/fleet.py: 1.0 s for the sync scheduler's, 0.6 s for
the sweep scheduler's). Planned on both databases, with the plan each would choose for a large
history (PostgreSQL: sequential scans off, since its planner rightly scans the few rows of a
test table)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from src.domains.external_accounting.reconciliation.repository import sweep_states_query
from src.domains.external_accounting.schedules.repository import scheduling_query

# Which index answers each of a query's questions about a connection's runs of one type.
SCHEDULING_INDEXES = {
    "ix_sync_runs_slot_started",  # the newest run that stands for a slot
    "ix_sync_runs_requested_started",  # the newest one someone asked for
    "uq_sync_runs_one_running",  # busy: running
    "uq_sync_runs_one_queued",  # busy: queued
    "ix_sync_runs_paused_until",  # the latest pause
}
SWEEP_INDEXES = {"ix_sync_runs_sweep_started"}  # the last reconciliation sweep


async def _plan(engine: AsyncEngine, query: Select[*tuple[Any, ...]]) -> str:
    statement = query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = await connection.execute(text(f"EXPLAIN QUERY PLAN {statement}"))
            return "\n".join(str(row[-1]) for row in rows)
        await connection.execute(text("SET LOCAL enable_seqscan = off"))
        rows = await connection.execute(text(f"EXPLAIN {statement}"))
        return "\n".join(str(row[0]) for row in rows)


@pytest.mark.parametrize(
    ("query", "indexes"),
    [(scheduling_query, SCHEDULING_INDEXES), (sweep_states_query, SWEEP_INDEXES)],
    ids=["sync scheduler", "sweep scheduler"],
)
async def test_a_scheduler_reads_each_answer_from_its_partial_index(
    engine: AsyncEngine, query: Any, indexes: set[str]
) -> None:
    plan = await _plan(engine, query())
    used = {name for name in indexes if name in plan}
    assert used == indexes, plan
    # The general index would mean walking a connection's whole history for one answer.
    assert "ix_sync_runs_connection_type_started" not in plan, plan
    assert "SCAN sync_runs" not in plan, plan
    assert "Seq Scan on sync_runs" not in plan, plan
