"""Process-wide tuning, applied once a process has built its long-lived state (imports, the
engine, the HTTP client): what every serving process, worker and CLI sync shares."""

from __future__ import annotations

import functools
import gc

# The cycle collector's first generation runs after this many container objects are allocated
# and not yet freed (CPython's default: 700). A sync's page keeps ~10,000 of them alive until
# it is stored (decoded invoices, their versions, COPY records), so at 700 the collector ran
# ~22 times a page and moved each page into the older generations, whose full collections then
# walked every object of the process: 1.6 s of a 50,000-invoice sync's ~8 s of CPU. With this
# and the start-up state frozen it is ~0.4 s, at the same peak memory (bench/README.md).
FIRST_GENERATION_THRESHOLD = 5_000


@functools.cache
def tune_garbage_collector() -> None:
    """Freeze what exists now (modules, metadata, pools: alive for the process's life, so no
    collection needs to walk them again) and collect the first generation less often. Once per
    process: objects made later are collected as usual."""
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(FIRST_GENERATION_THRESHOLD, second, third)
