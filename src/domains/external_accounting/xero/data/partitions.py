"""A full sync's phases 1 and 2 split into partitions that page side by side (issue 14).

Each partition is a date range of one phase (the window: dated on or after its start; the
outstanding: `AUTHORISED` and dated before it) paged as its own keyset on `UpdatedDateUTC`, so an
invoice edited mid-sync moves to the end of its partition's keyset and is never skipped. A sync
starts with one partition per phase; a partition whose first pages show it holds more than its
share of what is left (Xero's `pagination.itemCount` says how much) splits its date range into
children that start from its keyset position, so no invoice it already stored is fetched again
(but those of the keyset's one-second overlap). How many run at once is the tenant's in-flight
limit; when each call may start is still the call limiter's decision alone.

A split costs calls: each child ends with a part-filled page. So a partition splits only into as
many children as Xero's limits let pay off (`limits_model`): the wall time the remaining pages
would take, from the latency and the page-writing time measured so far, must come within
`SPLIT_SLACK` of the best the in-flight limit allows. Where calls are slow and the sync needs
little more than a minute of them, that is the full in-flight limit; where Xero's minute bounds
it throughout (one keyset at a call a second keeps up with 60 a minute), fewer or none; where
the one writer bounds it (a fast Xero), none.

The plan has two states. The *live* one (what the partitions fetching have reached) decides
splits and scheduling; the *committed* one (what stored pages reached, in the order a single
writer stored them) is what every page's transaction saves as the run's checkpoint: a position
is saved only with the page that reached it, so a resume never skips an unstored page."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from src.domains.external_accounting.xero.data.limits_model import least_wall_time

WINDOW, OUTSTANDING = 0, 1
# A split takes the fewest children whose estimated time is within this fraction of the best.
# Small: at 100,000 invoices a tenth let three children through Xero's minute where five are
# 7% quicker (bench/partition_model.py), for two part-filled pages.
SPLIT_SLACK = 0.02
# How much each page's decoding and writing times move the running estimates of them.
SMOOTHING = 0.3
# A checkpoint's `phase` while partitions run (the old single checkpoint's phase 0 or 1), and
# once they are all done (the cursor phase, 2).
CURSOR_PHASE = 2


@dataclass
class Partition:
    """One date range of one phase, and how far its keyset got."""

    key: str
    phase: int
    date_from: date | None
    date_to: date | None
    since: datetime | None = None
    done: bool = False
    # Live only: invoices left after the last page fetched (None until a page told), and the
    # dates of that page's invoices (where to cut when splitting).
    remaining: int | None = None
    page_dates: tuple[date, date] | None = None

    def filters(self, type_filter: list[str] | None) -> dict[str, Any]:
        """`iter_invoice_pages` keyword arguments for this partition from where it got to."""
        filters: dict[str, Any] = {"types": type_filter}
        if self.phase == OUTSTANDING:
            filters["statuses"] = ["AUTHORISED"]
        if self.date_from is not None:
            filters["date_from"] = self.date_from
        if self.date_to is not None:
            filters["date_to"] = self.date_to
        if self.since is not None:
            filters["modified_since"] = self.since
        return filters

    def saved(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "phase": self.phase,
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
            "since": self.since.isoformat() if self.since else None,
            "done": self.done,
        }

    @classmethod
    def restored(cls, saved: dict[str, Any]) -> Partition:
        return cls(
            key=str(saved["key"]),
            phase=int(saved["phase"]),
            date_from=date.fromisoformat(saved["date_from"]) if saved.get("date_from") else None,
            date_to=date.fromisoformat(saved["date_to"]) if saved.get("date_to") else None,
            since=datetime.fromisoformat(saved["since"]) if saved.get("since") else None,
            done=bool(saved.get("done")),
        )


def _smoothed(mean: float, sample: float, *, first: bool) -> float:
    return sample if first else mean + SMOOTHING * (sample - mean)


def initial_partitions(window_start: date, checkpoint: dict[str, Any] | None) -> list[Partition]:
    """The partitions a full sync starts with: one per phase, or what the checkpoint left of
    them. A checkpoint of the single-keyset sync (no `partitions`: phase and position) resumes
    as the partition of that phase from that position (and, in phase 1, the whole phase 2)."""
    window = Partition("w", WINDOW, window_start, None)
    outstanding = Partition("o", OUTSTANDING, None, window_start - timedelta(days=1))
    if not checkpoint:
        return [window, outstanding]
    phase = int(checkpoint.get("phase") or 0)
    if phase >= CURSOR_PHASE:
        return []
    if "partitions" in checkpoint:
        return [Partition.restored(p) for p in checkpoint["partitions"]]
    since = datetime.fromisoformat(checkpoint["since"]) if checkpoint.get("since") else None
    if phase == WINDOW:
        return [replace(window, since=since), outstanding]
    return [replace(outstanding, since=since)]


@dataclass
class PartitionPlan:
    """The live and committed state of a run's partitions (see the module docstring)."""

    partitions: list[Partition]
    concurrency: int
    page_size: int
    today: date
    # Xero's minute as the call limiter enforces it (its limit per tenant, its window).
    per_minute: int = 60
    window_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    # Measured as pages come: the quickest page fetch less its decoding (the latency; slower
    # ones waited on the limiter), and running means of a page's decoding and transaction (this
    # process's own time per page, which concurrency does not shorten: one event loop).
    latency_s: float | None = None
    fetches: int = 0
    decode_s: float = 0.0
    write_s: float = 0.0
    # When this run's calls started, those within the last window (Xero's minute counts them).
    starts: deque[float] = field(default_factory=deque)
    # Set once a page has been stored (`write_s` is measured).
    first_write: asyncio.Event = field(default_factory=asyncio.Event)
    committed: dict[str, Partition] = field(default_factory=dict)
    # Partitions to fetch, not yet started (children of a split wait here).
    pending: list[Partition] = field(default_factory=list)
    running: dict[str, Partition] = field(default_factory=dict)
    splits: int = 0
    # Set when a partition failed: the others stop after the page in hand.
    stopping: bool = False

    def __post_init__(self) -> None:
        for partition in self.partitions:
            self.committed[partition.key] = replace(partition)
            if not partition.done:
                self.pending.append(partition)

    # -- the live side: what to fetch next, and when to split -------------------------------

    def next(self) -> Partition | None:
        """The pending partition with the most left (unknown first: its first page tells; of
        equals the newest dates first, where most books hold the most)."""
        if not self.pending:
            return None
        best = max(
            reversed(self.pending),
            key=lambda p: math.inf if p.remaining is None else p.remaining,
        )
        self.pending.remove(best)
        self.running[best.key] = best
        return best

    def finished(self, partition: Partition) -> None:
        self.running.pop(partition.key, None)

    def fetched(self, started: float, seconds: float, decode_s: float = 0.0) -> None:
        """A page fetch that started at `started` (the plan's clock) took `seconds`, of which
        `decode_s` decoding its body."""
        waited = max(0.0, seconds - decode_s)
        self.latency_s = waited if self.latency_s is None else min(self.latency_s, waited)
        self.decode_s = _smoothed(self.decode_s, decode_s, first=not self.fetches)
        self.fetches += 1
        self.starts.append(started)
        while self.starts and self.starts[0] <= started - self.window_s:
            self.starts.popleft()

    def wrote(self, seconds: float) -> None:
        """A page's transaction took `seconds`."""
        self.write_s = _smoothed(self.write_s, seconds, first=not self.first_write.is_set())
        self.first_write.set()

    def estimate(self, pages: list[int]) -> float:
        """The wall time to fetch and store partitions with these numbers of pages left: what
        Xero's limits allow at the measured latency, the longest partition's calls one after
        another, or this process's own time for every page (decoding and writing), whichever is
        longest."""
        total = sum(pages)
        latency = self.latency_s or 0.0
        now = self.clock()
        limits = least_wall_time(
            total,
            latency,
            concurrent=max(1, min(self.concurrency, len(pages))),
            per_minute=self.per_minute,
            window_s=self.window_s,
            prior_starts=[start - now for start in self.starts],
        )
        own = total * (self.decode_s + self.write_s)
        return max(limits, max(pages, default=0) * latency, own)

    def _pages(self, partition: Partition) -> int:
        if partition.remaining is None:
            return 1
        return math.ceil(partition.remaining / self.page_size)

    def split(self, partition: Partition) -> list[Partition]:
        """Children that replace `partition` from its keyset position, as many as pay off (see
        the module docstring); none when one partition is as quick (and never in a busy
        second, whose pages say nothing of what is left)."""
        left = self._pages(partition)
        if partition.remaining is None or left < 2 or self.latency_s is None:
            return []
        parts = self.children_worth(partition, left)
        cuts = self._cuts(partition, parts)
        if not cuts:
            return []
        starts: list[date | None] = [partition.date_from, *(c + timedelta(days=1) for c in cuts)]
        ends: list[date | None] = [*cuts, partition.date_to]
        share_each = partition.remaining // len(starts)
        children = [
            Partition(
                key=f"{partition.key}.{index}",
                phase=partition.phase,
                date_from=low,
                date_to=high,
                since=partition.since,
                remaining=share_each,
            )
            for index, (low, high) in enumerate(zip(starts, ends, strict=True))
        ]
        self.splits += 1
        self.running.pop(partition.key, None)
        self.pending.extend(children)
        return children

    def children_worth(self, partition: Partition, left: int) -> int:
        """How many children to split `partition` (`left` pages) into: the fewest whose
        estimated wall time is within `SPLIT_SLACK` of the best, each child costing one more
        call than its even share (its part-filled last page); 1 is not splitting."""
        others = [
            self._pages(p)
            for p in (*self.pending, *self.running.values())
            if p.key != partition.key
        ]
        alone = self.estimate([*others, left])
        if alone <= (sum(others) + left) * (self.decode_s + self.write_s):
            # Bound by this process's own time per page: more calls can only take longer, so
            # the other estimates (a simulation each, on every page) are not needed.
            return 1
        estimates = {1: alone} | {
            parts: self.estimate([*others, *[math.ceil((left + parts - 1) / parts)] * parts])
            for parts in range(2, max(1, self.concurrency) + 1)
        }
        best = min(estimates.values())
        return min(parts for parts, wall in estimates.items() if wall <= best * (1 + SPLIT_SLACK))

    def _cuts(self, partition: Partition, parts: int) -> list[date]:
        """`parts - 1` dates cutting the partition's range: the last child of child k ends at
        cut k. The range's open ends are closed by what is known (the window ends today, the
        outstanding phase's oldest invoice is no older than the last page's oldest seen, a
        guess a later split corrects), and the cuts are spread evenly from the oldest date of
        the last page fetched: when updates follow dates (most books) the dates before it are
        mostly stored already."""
        if parts < 2 or partition.page_dates is None:
            return []
        oldest_seen, newest_seen = partition.page_dates
        low = partition.date_from or oldest_seen
        high = partition.date_to or max(self.today, newest_seen, low)
        start = min(max(oldest_seen, low), high)
        span = (high - start).days
        parts = min(parts, span)
        if parts < 2:
            return []
        cuts = [start + timedelta(days=span * k // parts) for k in range(1, parts)]
        if cuts[0] < low or (partition.date_to is not None and cuts[-1] >= partition.date_to):
            return []
        return cuts

    # -- the committed side: what the checkpoint says ----------------------------------------

    def checkpoint_with(self, key: str, since: datetime | None, done: bool) -> list[dict[str, Any]]:
        """The committed partitions as a checkpoint, with `key` advanced to `since` (the page
        being stored reached it)."""
        saved = []
        for partition in self.committed.values():
            if partition.key == key:
                partition = replace(partition, since=since or partition.since, done=done)
            saved.append(partition.saved())
        return saved

    def commit_page(self, key: str, since: datetime | None, done: bool) -> None:
        current = self.committed[key]
        self.committed[key] = replace(current, since=since or current.since, done=done)

    def commit_split(self, key: str, children: list[Partition]) -> None:
        """Replace a partition by its children, in place (the checkpoint keeps its order)."""
        rebuilt: dict[str, Partition] = {}
        for existing_key, partition in self.committed.items():
            if existing_key != key:
                rebuilt[existing_key] = partition
                continue
            for child in children:
                rebuilt[child.key] = replace(
                    child, since=partition.since, remaining=None, page_dates=None
                )
        self.committed = rebuilt

    def commit_done(self, key: str) -> None:
        self.committed[key] = replace(self.committed[key], done=True)

    def window_left(self) -> bool:
        """Whether any window partition is still being fetched (the run's live `phase`)."""
        return any(p.phase == WINDOW for p in (*self.pending, *self.running.values()))
