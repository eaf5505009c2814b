"""The partitioned full sync in virtual time: how well its splits use Xero's limits (issue 14).

    uv run python bench/partition_model.py                       # the table, ~1 CPU-minute
    uv run python bench/partition_model.py --sizes 20000 --shapes growth --show-splits

The real `InvoicePhases.partitioned` and `PartitionPlan` run on an event loop whose clock jumps
to the next timer instead of waiting, against a modelled Xero (keyset pages of 1,000 invoices by
`UpdatedDateUTC` within a date range, at most 5 calls in flight and 60 started a minute, each
taking `--latency-ms`) and a modelled page store (`--write-cpu-ms` of this process's time, in
which nothing else runs, then `--write-wait-ms` waiting on the database). Every invoice is
checked stored once the sync ends. No sockets, no database: a run of 100,000 invoices takes
seconds, and the same inputs give the same table on any machine.

This is a model, not a measurement: `bench/run.py --only latency` measures the sync itself (its
CPU shares two cores with the sandbox and PostgreSQL, which the model leaves out, so real wall
times are longer). What the model shows is how far the split decisions are from what Xero's
limits allow, for books of different shapes:

- `growth`: the sandbox's books (more invoices in recent years), updated within 120 days;
- `uniform`: as many invoices every day; `decline`: more in the older years;
- `migrated`: books imported in one afternoon 640 days ago (their old invoices all updated then),
  kept in Xero since.

Each row runs twice: with the plan's own cuts (estimated from the partition's last page), and
with *oracle* cuts (the true equal shares of what is left, which the model knows and a sync
cannot): the gap between the two is what better cut estimates could still win, the gap between
the oracle and the floor is what splitting after the first page costs at all."""

from __future__ import annotations

import argparse
import asyncio
import random
import selectors
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast
from unittest import mock

from src.core.database import JsonText
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.ledger.runs import RunProgress
from src.domains.external_accounting.xero.data import invoice_phases
from src.domains.external_accounting.xero.data.accounting_client import XeroAccountingClient
from src.domains.external_accounting.xero.data.limits_model import least_wall_time
from src.domains.external_accounting.xero.data.partitions import (
    Partition,
    PartitionPlan,
    initial_partitions,
)
from src.domains.external_accounting.xero.data.xero_models import XeroInvoice, XeroInvoicePage

PAGE = 1000
HISTORY_DAYS = 6 * 365
NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
WINDOW_START = date(2016, 12, 2)  # bench/run.py's ten-year window
SHAPES = ("growth", "uniform", "decline", "migrated")


class _Clock:
    now = 0.0


CLOCK = _Clock()


class _JumpingSelector(selectors.DefaultSelector):
    """Never blocks: where the loop would wait for its next timer, the clock jumps there."""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if not events and timeout:
            CLOCK.now += timeout
        return events


class _VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__(_JumpingSelector())

    def time(self) -> float:
        return CLOCK.now


def _busy(seconds: float) -> None:
    """This process's CPU: the one event loop runs nothing else meanwhile."""
    CLOCK.now += seconds


@dataclass(frozen=True, order=True)
class _Invoice:
    updated: datetime
    invoice_id: str
    day: date
    status: str


def books(shape: str, count: int, seed: int = 7) -> list[_Invoice]:
    """`count` invoices over six years of `shape` (see the module docstring), by update time."""
    rng = random.Random(f"{shape}:{count}:{seed}")
    invoices = []
    for index in range(count):
        share = rng.random()
        age = int(HISTORY_DAYS * share) if shape == "uniform" else int(HISTORY_DAYS * share**1.6)
        if shape == "decline":
            age = HISTORY_DAYS - 1 - age
        day = NOW.date() - timedelta(days=age)
        created = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
            seconds=rng.randrange(28_800, 64_800)
        )
        touched = created + timedelta(seconds=rng.randrange(max(1, min(age, 120)) * 86_400))
        updated = min(touched, NOW - timedelta(seconds=rng.randrange(1, 3_600)))
        if shape == "migrated" and age > 640:
            updated = NOW - timedelta(days=640, seconds=rng.randrange(7_200))
        # Unique update times: the model's keyset has no ties (the client's overlap handles
        # Xero's).
        updated += timedelta(microseconds=index)
        status = "AUTHORISED" if rng.random() < (0.06 if age > 365 else 0.2) else "PAID"
        invoices.append(_Invoice(updated, f"{index:08d}", day, status))
    invoices.sort()
    return invoices


def _matches(invoice: _Invoice, filters: dict[str, Any]) -> bool:
    if (low := filters.get("date_from")) is not None and invoice.day < low:
        return False
    if (high := filters.get("date_to")) is not None and invoice.day > high:
        return False
    statuses = filters.get("statuses")
    return statuses is None or invoice.status in statuses


@dataclass
class ModelXero:
    """Xero's invoice pages for one tenant, under its in-flight and minute limits."""

    invoices: list[_Invoice]
    latency_s: float
    decode_s: float
    concurrent: int = 5
    per_minute: int = 60
    window_s: float = 60.0
    calls: int = 0
    in_flight: int = 0
    starts: deque[float] = field(default_factory=deque)
    throttle: Any = None

    def __post_init__(self) -> None:
        limits = SimpleNamespace(
            concurrent=self.concurrent, minute=self.per_minute, window_s=self.window_s
        )
        self.throttle = SimpleNamespace(limiter=SimpleNamespace(limits=limits))

    async def _start(self) -> None:
        while True:
            while self.starts and self.starts[0] <= CLOCK.now - self.window_s:
                self.starts.popleft()
            if self.in_flight < self.concurrent and len(self.starts) < self.per_minute:
                break
            if self.in_flight >= self.concurrent:
                await asyncio.sleep(0.01)
            else:
                await asyncio.sleep(self.starts[0] + self.window_s - CLOCK.now + 1e-6)
        self.in_flight += 1
        self.calls += 1
        self.starts.append(CLOCK.now)

    async def iter_invoice_pages(
        self, connection: Connection, *, page_size: int = PAGE, **filters: Any
    ) -> AsyncGenerator[XeroInvoicePage, None]:
        since = filters.get("modified_since")
        matching = [i for i in self.invoices if _matches(i, filters)]
        position = 0 if since is None else sum(1 for i in matching if i.updated <= since)
        while True:
            await self._start()
            await asyncio.sleep(self.latency_s)
            self.in_flight -= 1
            _busy(self.decode_s)
            page = matching[position : position + page_size]
            position += len(page)
            if not page:
                return
            yield XeroInvoicePage(
                invoices=cast(
                    list[XeroInvoice],
                    [SimpleNamespace(invoice_id=i.invoice_id, date=i.day) for i in page],
                ),
                raw=[cast(JsonText, None)] * len(page),
                page=1,
                page_count=None,
                item_count=len(matching) - position + len(page),
                resume_from=page[-1].updated,
                remaining=len(matching) - position,
                decode_s=self.decode_s,
            )
            if len(page) < page_size:
                return


class ModelPhases(invoice_phases.InvoicePhases):
    """The real paging and scheduling; a page's store is modelled, and remembered."""

    def __init__(self, client: ModelXero, write_cpu_s: float, write_wait_s: float) -> None:
        super().__init__(cast(Any, None), cast(XeroAccountingClient, client), cast(Any, None))
        self.write_cpu_s, self.write_wait_s = write_cpu_s, write_wait_s
        self.stored: set[str] = set()

    async def store(
        self,
        connection: Connection,
        progress: RunProgress,
        pairs: list[tuple[XeroInvoice, JsonText]],
        cursor_scope: str | None,
        **_: Any,
    ) -> None:
        _busy(self.write_cpu_s)
        await asyncio.sleep(self.write_wait_s)
        self.stored.update(invoice.invoice_id for invoice, _ in pairs)


def left_in(partition: Partition, invoices: list[_Invoice]) -> list[_Invoice]:
    """The invoices `partition` has still to fetch."""
    filters, since = partition.filters(None), partition.since
    return [i for i in invoices if _matches(i, filters) and (since is None or i.updated > since)]


class _ModelPlan(PartitionPlan):
    """The plan on the virtual clock; with `oracle`, cut at the true equal shares."""

    oracle: list[_Invoice] | None = None

    def __post_init__(self) -> None:
        self.clock = lambda: CLOCK.now
        super().__post_init__()

    def _cuts(self, partition: Partition, parts: int) -> list[date]:
        if self.oracle is None:
            return super()._cuts(partition, parts)
        days = sorted(i.day for i in left_in(partition, self.oracle))
        if parts < 2 or len(days) < parts:
            return []
        cuts = sorted({days[len(days) * k // parts] for k in range(1, parts)})
        return [c for c in cuts if partition.date_to is None or c < partition.date_to]


def floor_calls(invoices: Sequence[_Invoice]) -> int:
    """As bench/run.py counts it: full pages of the window, and of the outstanding before it."""
    window = sum(1 for i in invoices if i.day >= WINDOW_START)
    outstanding = sum(1 for i in invoices if i.day < WINDOW_START and i.status == "AUTHORISED")
    return -(-window // PAGE) + max(1, -(-outstanding // PAGE))


@dataclass
class Outcome:
    wall_s: float
    calls: int
    splits: int


def simulate(invoices: list[_Invoice], args: argparse.Namespace, *, oracle: bool) -> Outcome:
    client = ModelXero(invoices, args.latency_ms / 1000, args.decode_ms / 1000)
    phases = ModelPhases(client, args.write_cpu_ms / 1000, args.write_wait_ms / 1000)
    progress = cast(RunProgress, SimpleNamespace(phase=0, phase_name=None, partitions=None))
    plans: list[PartitionPlan] = []

    class Plan(_ModelPlan):
        def __post_init__(self) -> None:
            super().__post_init__()
            self.oracle = invoices if oracle else None
            plans.append(self)

        def split(self, partition: Partition) -> list[Partition]:
            children = super().split(partition)
            if children and args.show_splits:
                counts = [len(left_in(child, invoices)) for child in children]
                print(f"    t={CLOCK.now:6.2f} s  {partition.key} splits: {counts}")
            return children

    loop = _VirtualLoop()
    asyncio.set_event_loop(loop)
    CLOCK.now = 0.0
    # The sync builds its plan itself: this run's is the model's subclass.
    with mock.patch.object(invoice_phases, "PartitionPlan", Plan):
        partitions = initial_partitions(WINDOW_START, None)
        loop.run_until_complete(
            phases.partitioned(cast(Connection, None), progress, None, partitions)
        )
    loop.close()
    expected = {i.invoice_id for i in invoices if i.day >= WINDOW_START or i.status == "AUTHORISED"}
    if phases.stored != expected:
        raise AssertionError(f"stored {len(phases.stored)} invoices of {len(expected)}")
    return Outcome(CLOCK.now, client.calls, plans[0].splits)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--latency-ms", type=float, default=1000.0)
    parser.add_argument("--decode-ms", type=float, default=15.0, help="decoding a page")
    parser.add_argument(
        "--write-cpu-ms", type=float, default=75.0, help="this process's time storing a page"
    )
    parser.add_argument(
        "--write-wait-ms", type=float, default=66.0, help="a page's wait on the database"
    )
    parser.add_argument("--show-splits", action="store_true", help="each split's true shares")
    args = parser.parse_args()
    print(
        f"{'books':<9} {'invoices':>8} {'floor':>12} {'plan: wall':>11} {'calls':>6} "
        f"{'splits':>6} {'oracle: wall':>13} {'calls':>6}"
    )
    for shape in args.shapes.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            invoices = books(shape, size)
            calls = floor_calls(invoices)
            floor_s = least_wall_time(calls, args.latency_ms / 1000)
            if args.show_splits:
                print(f"  {shape} {size:,}, the plan's cuts:")
            planned = simulate(invoices, args, oracle=False)
            if args.show_splits:
                print(f"  {shape} {size:,}, oracle cuts:")
            best = simulate(invoices, args, oracle=True)
            print(
                f"{shape:<9} {size:>8,} {floor_s:>5.1f} s {calls:>3} c "
                f"{planned.wall_s:>5.1f} {planned.wall_s / floor_s:>4.2f}x {planned.calls:>6} "
                f"{planned.splits:>6} {best.wall_s:>6.1f} {best.wall_s / floor_s:>5.2f}x "
                f"{best.calls:>6}"
            )


if __name__ == "__main__":
    main()
