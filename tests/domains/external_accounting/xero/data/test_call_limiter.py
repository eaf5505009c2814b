"""The call limiter: in-process with a fake clock, and Redis-backed (real Redis) shared by two
limiters the way two worker processes share it."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from src.core.settings import Settings
from src.domains.external_accounting.xero.data.call_limiter import (
    CallLimiter,
    CallLimits,
    InProcessCallLimiter,
    RedisCallLimiter,
)

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _fake_time(limits: CallLimits) -> tuple[InProcessCallLimiter, list[float]]:
    clock = [1000.0]
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(round(seconds, 6))
        clock[0] += seconds

    return InProcessCallLimiter(limits, sleep=sleep, clock=lambda: clock[0]), sleeps


async def _calls(limiter: CallLimiter, tenant: str, count: int) -> None:
    for _ in range(count):
        async with limiter.slot(tenant):
            pass


async def test_the_minute_limit_paces_instead_of_being_exceeded() -> None:
    limiter, sleeps = _fake_time(CallLimits(minute=3, window_s=10))
    await _calls(limiter, "t1", 3)
    assert sleeps == []
    await _calls(limiter, "t1", 1)
    assert sleeps == [10.0]  # the fourth call waits until the first is a window old
    await _calls(limiter, "t2", 3)  # another tenant has its own budget
    assert sleeps == [10.0]


async def test_the_app_limit_spans_tenants() -> None:
    limiter, sleeps = _fake_time(CallLimits(minute=100, app_minute=4, window_s=10))
    for tenant in ("a", "b", "c", "d"):
        await _calls(limiter, tenant, 1)
    await _calls(limiter, "e", 1)
    assert sleeps == [10.0]


async def test_xero_headers_book_calls_made_elsewhere() -> None:
    limiter, sleeps = _fake_time(CallLimits(minute=5, window_s=10))
    await _calls(limiter, "t1", 1)
    # Xero says none of this minute is left though we made one call: others spent four.
    await limiter.observe("t1", minute_remaining=0)
    await _calls(limiter, "t1", 1)
    assert sleeps == [10.0]
    await limiter.observe("t1", minute_remaining=None)  # no header, nothing to learn


async def test_a_429_holds_the_tenant_for_retry_after() -> None:
    limiter, sleeps = _fake_time(CallLimits())
    await limiter.hold("t1", 7)
    await _calls(limiter, "t1", 1)
    await _calls(limiter, "t2", 1)
    assert sleeps == [7.0]


async def test_at_most_the_concurrent_limit_is_in_flight() -> None:
    limiter = InProcessCallLimiter(CallLimits(concurrent=2))
    in_flight, peak = 0, 0

    async def call() -> None:
        nonlocal in_flight, peak
        async with limiter.slot("t1"):
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.02)
            in_flight -= 1

    await asyncio.gather(*(call() for _ in range(7)))
    assert peak == 2


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as error:  # a missing Redis must fail the run, not skip it
        pytest.fail(f"Redis is required at {REDIS_URL} (TEST_REDIS_URL): {error}")
    yield client
    await client.aclose()


def _shared_pair(redis_url: str, limits: CallLimits) -> tuple[RedisCallLimiter, RedisCallLimiter]:
    """Two limiters with their own connections and one key space: two processes, as Redis sees
    them."""
    prefix = f"test:{uuid.uuid4().hex}"
    return (
        RedisCallLimiter(Redis.from_url(redis_url), limits, prefix=prefix),
        RedisCallLimiter(Redis.from_url(redis_url), limits, prefix=prefix),
    )


async def test_redis_limiter_shares_the_minute_and_concurrency_limits(redis: Redis) -> None:
    limits = CallLimits(minute=5, concurrent=2, window_s=0.6)
    first, second = _shared_pair(REDIS_URL, limits)
    starts: list[float] = []
    in_flight, peak = 0, 0

    async def call(limiter: RedisCallLimiter) -> None:
        nonlocal in_flight, peak
        async with limiter.slot("tenant"):
            starts.append(time.monotonic())
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1

    began = time.monotonic()
    await asyncio.gather(*(call(first if i % 2 else second) for i in range(12)))
    elapsed = time.monotonic() - began
    assert peak <= 2
    starts.sort()
    # Any six consecutive starts span at least a window: never six calls inside one minute.
    spans = [later - earlier for earlier, later in zip(starts, starts[5:], strict=False)]
    assert min(spans) >= 0.6 - 0.02
    assert elapsed >= 2 * 0.6 - 0.05  # twelve calls at five a window: two windows waited
    assert first.waited_s + second.waited_s > 0
    await first.close()
    await second.close()


async def test_redis_limiter_shares_holds_and_booked_calls(redis: Redis) -> None:
    first, second = _shared_pair(REDIS_URL, CallLimits(minute=3, window_s=0.5))
    await first.hold("tenant", 0.3)
    began = time.monotonic()
    await _calls(second, "tenant", 1)
    assert time.monotonic() - began >= 0.25  # the other process's 429 held this one too
    await first.observe("tenant", minute_remaining=0)  # Xero: the minute is spent
    began = time.monotonic()
    await _calls(second, "tenant", 1)
    assert time.monotonic() - began >= 0.4
    # A slot whose holder died is freed after the lease time.
    dying = RedisCallLimiter(
        Redis.from_url(REDIS_URL), CallLimits(concurrent=1, lease_ttl_s=0.2), prefix=first.prefix
    )
    await dying._try_acquire("other", "dead-process-lease")
    began = time.monotonic()
    await _calls(dying, "other", 1)
    assert 0.15 <= time.monotonic() - began < 2
    for limiter in (first, second, dying):
        await limiter.close()


async def test_without_pacing_only_the_concurrency_limit_remains() -> None:
    settings = Settings(xero_pacing=False)
    limits = CallLimits.from_settings(settings)
    limiter, sleeps = _fake_time(limits)
    await _calls(limiter, "t1", 500)
    await limiter.observe("t1", minute_remaining=0)  # a sandbox's unenforced header: ignored
    await _calls(limiter, "t1", 1)
    assert sleeps == []
    assert limits.concurrent == 5
    paced = CallLimits.from_settings(Settings(xero_minute_seconds=60))
    assert (paced.minute, paced.window_s) == (60, 61)  # a second of margin for network jitter
