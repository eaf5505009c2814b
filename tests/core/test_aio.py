from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from src.core.aio import prefetch


async def test_prefetch_yields_everything_in_order_while_working_ahead() -> None:
    produced: list[int] = []

    async def source() -> AsyncIterator[int]:
        for n in range(5):
            produced.append(n)
            yield n

    seen: list[int] = []
    async for item in prefetch(source(), depth=1):
        await asyncio.sleep(0.01)
        seen.append(item)
        assert len(produced) >= min(5, len(seen) + 1)  # the next item was already fetched
    assert seen == [0, 1, 2, 3, 4]


async def test_prefetch_raises_the_sources_error_after_the_good_items() -> None:
    async def source() -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("xero went away")

    seen: list[int] = []

    async def drain() -> None:
        async for item in prefetch(source()):
            seen.append(item)

    with pytest.raises(RuntimeError, match="went away"):
        await drain()
    assert seen == [1]
