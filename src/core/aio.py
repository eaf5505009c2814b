"""Small asyncio helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


async def prefetch(source: AsyncIterator[T], depth: int = 1) -> AsyncIterator[T]:
    """Iterate `source` while it already works on the next `depth` items in the background: a sync
    fetches page N+1 from Xero while page N is being written to the database."""
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=depth)

    async def produce() -> None:
        try:
            async for item in source:
                await queue.put(item)
        except BaseException as error:  # handed to the consumer, raised there
            await queue.put(error)
            return
        await queue.put(_DONE)

    producer = asyncio.create_task(produce())
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        producer.cancel()
        try:
            await producer
        except asyncio.CancelledError:
            pass
