"""How many children a partition splits into: as many as Xero's limits let pay off."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from src.domains.external_accounting.xero.data.limits_model import least_wall_time
from src.domains.external_accounting.xero.data.partitions import (
    OUTSTANDING,
    WINDOW,
    Partition,
    PartitionPlan,
)

TODAY = date(2026, 12, 1)


def test_the_least_wall_time_is_the_in_flight_and_minute_limits_at_that_latency() -> None:
    assert least_wall_time(21, 1.0) == 5.0  # five rounds of five
    assert least_wall_time(101, 1.0) == 69.0  # 60 in 12 s, the 61st at 60 s, 8 more rounds
    assert least_wall_time(10, 1.0, concurrent=1) == 10.0
    # Calls made in the last minute count against it: 58 made just now leave 2 for this one.
    assert least_wall_time(5, 1.0, prior_starts=[-1.0] * 58) == 60.0


def _plan(
    latency_s: float, write_s: float, window_pages: int, decode_s: float = 0.0
) -> tuple[PartitionPlan, Partition]:
    """A full sync after its first page of each phase: the window has `window_pages` pages
    left, the outstanding phase is done."""
    clock = [100.0]
    window = Partition("w", WINDOW, TODAY - timedelta(days=3650), None)
    outstanding = Partition("o", OUTSTANDING, None, TODAY - timedelta(days=3651))
    plan = PartitionPlan(
        [window, outstanding], concurrency=5, page_size=1000, today=TODAY, clock=lambda: clock[0]
    )
    for partition in (plan.next(), plan.next()):
        assert partition is not None
        plan.fetched(clock[0] - latency_s - decode_s, latency_s + decode_s, decode_s)
    plan.wrote(write_s)
    plan.finished(outstanding)
    window.remaining = window_pages * 1000
    window.since = datetime(2026, 1, 1, tzinfo=UTC)
    window.page_dates = (TODAY - timedelta(days=3000), TODAY - timedelta(days=2900))
    return plan, window


@pytest.mark.parametrize(
    ("latency_s", "write_s", "pages", "children", "decode_s"),
    [
        # Under a minute of slow calls: the whole in-flight limit pays off.
        (1.0, 0.1, 19, 5, 0.0),
        # Past Xero's minute, the calls left after it go five at a time: five children.
        (1.0, 0.1, 99, 5, 0.0),
        # Four children are within 2% of five's time, for one part-filled page fewer.
        (1.0, 0.1, 150, 4, 0.0),
        # Xero's minute bounds it throughout: one keyset at a call a second keeps up with 60 a
        # minute, so no split pays off.
        (1.0, 0.1, 300, 1, 0.0),
        # A fast Xero: the one writer bounds it, and a split would only add calls.
        (0.01, 0.1, 99, 1, 0.0),
        # Decoding is this process's time too: a fetch of 0.3 s that decoded for 0.2 s.
        (0.1, 0.1, 20, 1, 0.2),
        (1.0, 0.1, 1, 1, 0.0),
    ],
)
def test_a_partition_splits_into_as_many_children_as_pay_off(
    latency_s: float, write_s: float, pages: int, children: int, decode_s: float
) -> None:
    plan, window = _plan(latency_s, write_s, pages, decode_s)
    made = plan.split(window)
    assert len(made) == (children if children > 1 else 0)
    if made:
        assert made[0].date_from == window.date_from
        assert made[-1].date_to is None
        assert all(child.since == window.since for child in made)
        assert [p.key for p in plan.pending] == [c.key for c in made]


def test_the_latency_is_the_quickest_fetch_and_the_minute_forgets_old_starts() -> None:
    clock = [0.0]
    plan = PartitionPlan([], concurrency=5, page_size=1000, today=TODAY, clock=lambda: clock[0])
    plan.fetched(0.0, 3.0)  # waited on the limiter
    plan.fetched(1.0, 1.0)
    plan.fetched(70.0, 1.5)
    assert plan.latency_s == 1.0
    assert list(plan.starts) == [70.0]
    plan.wrote(0.2)
    plan.wrote(0.4)
    assert 0.2 < plan.write_s < 0.4
