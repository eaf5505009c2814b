"""How long Xero's limits make a number of calls take: what a full sync sizes its partitions
by (`partitions`), and the floor the benchmark measures a sync against (`bench/run.py`)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable


def least_wall_time(
    calls: int,
    latency_s: float,
    *,
    concurrent: int = 5,
    per_minute: int = 60,
    window_s: float = 60.0,
    prior_starts: Iterable[float] = (),
) -> float:
    """The least time from now for `calls` calls that each take `latency_s`, by simulation:
    each starts as early as it may, with fewer than `concurrent` in flight and fewer than
    `per_minute` started in any `window_s`. `prior_starts` are the start times (negative:
    seconds before now) of calls already made, which still count against the window."""
    starts = sorted(s for s in prior_starts if s > -window_s)
    prior = len(starts)
    in_flight: list[float] = []  # end times, a heap
    now, last_end = 0.0, 0.0
    for index in range(prior, prior + calls):
        if index >= per_minute:
            now = max(now, starts[index - per_minute] + window_s)
        while in_flight and in_flight[0] <= now:
            heapq.heappop(in_flight)
        if len(in_flight) >= concurrent:
            now = max(now, heapq.heappop(in_flight))
        starts.append(now)
        heapq.heappush(in_flight, now + latency_s)
        last_end = max(last_end, now + latency_s)
    return last_end
