"""Pacing of Xero calls, so a sync stays inside Xero's limits instead of meeting 429s.

Every call takes a slot first: at most `concurrent` in flight per tenant, at most `minute` started
in any `window_s` per tenant (a sliding window never exceeds Xero's fixed one, whenever Xero's
window starts), and at most `app_minute` per window across tenants. Xero's remaining-budget
headers correct the count: when Xero says more calls were spent than we recorded (calls from a
process that does not share this limiter, or from before a restart), the difference is booked
now. A 429 holds the tenant for its `Retry-After`.

Two backends: in-process (the embedded default; one process) and Redis (production; every
process that calls Xero for a tenant shares one count, updated atomically by Lua scripts on
Redis's own clock)."""

from __future__ import annotations

import asyncio
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from src.core.settings import Settings, setting_default

# How long a caller waits before asking again while the tenant's five slots are all taken.
_BUSY_POLL_S = 0.01
_UNPACED = 2**62


# The least margin added to Xero's minute for the jitter between sending and arrival.
MIN_JITTER_MARGIN_S = 0.25


@dataclass(frozen=True)
class CallLimits:
    """Xero's limits as this limiter enforces them (`window_s` is Xero's minute). The defaults are
    Settings'; the service builds them with `from_settings`."""

    minute: int = setting_default("xero_minute_limit")
    concurrent: int = setting_default("xero_concurrent_limit")
    app_minute: int = setting_default("xero_app_minute_limit")
    window_s: float = setting_default("xero_minute_seconds")
    # A slot whose holder died (crash, kill -9) is freed after this long.
    lease_ttl_s: float = 300.0
    # Book the calls Xero's X-MinLimit-Remaining says were spent elsewhere (off only when Xero's
    # limits are not enforced at all, where the header's numbers mean nothing).
    book_from_headers: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> CallLimits:
        """The limits from settings, the window one Xero second (at least a quarter of a real
        second) longer than a minute: our clock starts a call when it is sent, Xero's when it
        arrives, and network jitter between the two must not squeeze a call into the previous
        window. The floor matters where the minute is compressed (the sandbox, tests): a
        sixtieth of a one-second minute is less than a busy machine's jitter."""
        if not settings.xero_pacing:
            return cls(
                minute=_UNPACED,
                concurrent=settings.xero_concurrent_limit,
                app_minute=_UNPACED,
                book_from_headers=False,
            )
        return cls(
            minute=settings.xero_minute_limit,
            concurrent=settings.xero_concurrent_limit,
            app_minute=settings.xero_app_minute_limit,
            window_s=settings.xero_minute_seconds
            + max(settings.xero_minute_seconds / 60, MIN_JITTER_MARGIN_S),
        )


class CallLimiter(ABC):
    """Slots for calls to Xero, per tenant (see the module docstring)."""

    def __init__(
        self, limits: CallLimits, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        self.limits = limits
        self.sleep = sleep
        self.waited_s = 0.0  # total time callers were paced (for logs and the benchmark)

    @asynccontextmanager
    async def slot(
        self, tenant_id: str, on_wait: Callable[[float], None] | None = None
    ) -> AsyncIterator[None]:
        """Wait for a slot for one call to `tenant_id`; it is freed when the block exits.
        `on_wait` hears of every wait this limiter imposes (a run's progress reports it)."""
        lease = uuid.uuid4().hex
        while (wait := await self._try_acquire(tenant_id, lease)) > 0:
            self.waited_s += wait
            if on_wait is not None:
                on_wait(wait)
            await self.sleep(wait)
        try:
            yield
        finally:
            await self._release(tenant_id, lease)

    @abstractmethod
    async def _try_acquire(self, tenant_id: str, lease: str) -> float:
        """Take a slot and return 0, or return how long to wait before asking again."""

    @abstractmethod
    async def _release(self, tenant_id: str, lease: str) -> None: ...

    @abstractmethod
    async def observe(self, tenant_id: str, minute_remaining: int | None) -> None:
        """Book the calls Xero says were spent in its current minute that we did not record."""

    @abstractmethod
    async def hold(self, tenant_id: str, seconds: float) -> None:
        """No call to `tenant_id` for `seconds` (Xero answered 429 with this Retry-After)."""

    async def close(self) -> None:  # noqa: B027  (only some backends hold connections)
        """Release the backend's connections."""


@dataclass
class _TenantLog:
    started: deque[float] = field(default_factory=deque)
    in_flight: set[str] = field(default_factory=set)
    held_until: float = 0.0


class InProcessCallLimiter(CallLimiter):
    """The embedded default: exact for one process (the event loop makes each check atomic)."""

    def __init__(
        self,
        limits: CallLimits,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(limits, sleep)
        self.clock = clock
        self.tenants: dict[str, _TenantLog] = {}
        self.app_started: deque[float] = deque()

    def _tenant(self, tenant_id: str, now: float) -> _TenantLog:
        log = self.tenants.setdefault(tenant_id, _TenantLog())
        horizon = now - self.limits.window_s
        while log.started and log.started[0] <= horizon:
            log.started.popleft()
        while self.app_started and self.app_started[0] <= horizon:
            self.app_started.popleft()
        return log

    async def _try_acquire(self, tenant_id: str, lease: str) -> float:
        now = self.clock()
        log = self._tenant(tenant_id, now)
        limits = self.limits
        if log.held_until > now:
            return log.held_until - now
        if len(log.in_flight) >= limits.concurrent:
            return _BUSY_POLL_S
        if len(log.started) >= limits.minute:
            return log.started[0] + limits.window_s - now
        if len(self.app_started) >= limits.app_minute:
            return self.app_started[0] + limits.window_s - now
        log.started.append(now)
        self.app_started.append(now)
        log.in_flight.add(lease)
        return 0.0

    async def _release(self, tenant_id: str, lease: str) -> None:
        self.tenants[tenant_id].in_flight.discard(lease)

    async def observe(self, tenant_id: str, minute_remaining: int | None) -> None:
        if minute_remaining is None or not self.limits.book_from_headers:
            return
        now = self.clock()
        log = self._tenant(tenant_id, now)
        missing = self.limits.minute - minute_remaining - len(log.started)
        log.started.extend([now] * max(0, missing))

    async def hold(self, tenant_id: str, seconds: float) -> None:
        log = self._tenant(tenant_id, self.clock())
        log.held_until = max(log.held_until, self.clock() + seconds)


# KEYS: tenant calls (zset: lease -> start), tenant leases (zset: lease -> expiry),
#       app calls (zset), tenant hold (string: until)
# ARGV: window_s, minute, app_minute, concurrent, lease, lease_ttl_s
_ACQUIRE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local held = tonumber(redis.call('GET', KEYS[4]) or '0')
if held > now then return tostring(held - now) end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 'busy' end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + window - now)
end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('ZADD', KEYS[3], now, ARGV[5])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[6]), ARGV[5])
local keep = math.ceil(math.max(window, tonumber(ARGV[6])) * 1000) + 1000
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], keep) end
return '0'
"""

# KEYS: tenant calls; ARGV: window_s, minute, remaining, prefix for booked members
_OBSERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
local missing = tonumber(ARGV[2]) - tonumber(ARGV[3]) - redis.call('ZCARD', KEYS[1])
for i = 1, missing do redis.call('ZADD', KEYS[1], now, ARGV[4] .. i) end
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
return missing
"""

# KEYS: tenant hold; ARGV: seconds
_HOLD = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local target = now + tonumber(ARGV[1])
local held = tonumber(redis.call('GET', KEYS[1]) or '0')
if target > held then
  redis.call('SET', KEYS[1], tostring(target), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
end
return 1
"""


class RedisCallLimiter(CallLimiter):
    """Production: one count per tenant shared by every process, in Redis."""

    def __init__(
        self,
        redis: Any,
        limits: CallLimits,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        prefix: str = "ledgersync:xero",
    ) -> None:
        super().__init__(limits, sleep)
        self.redis = redis
        self.prefix = prefix
        self._acquire = redis.register_script(_ACQUIRE)
        self._observe = redis.register_script(_OBSERVE)
        self._hold = redis.register_script(_HOLD)

    @classmethod
    def from_url(cls, url: str, limits: CallLimits) -> RedisCallLimiter:
        from redis.asyncio import Redis

        return cls(Redis.from_url(url), limits)

    def _key(self, tenant_id: str, what: str) -> str:
        return f"{self.prefix}:tenant:{tenant_id}:{what}"

    async def _try_acquire(self, tenant_id: str, lease: str) -> float:
        limits = self.limits
        answer = await self._acquire(
            keys=[
                self._key(tenant_id, "calls"),
                self._key(tenant_id, "leases"),
                f"{self.prefix}:app:calls",
                self._key(tenant_id, "hold"),
            ],
            args=[
                limits.window_s,
                limits.minute,
                limits.app_minute,
                limits.concurrent,
                lease,
                limits.lease_ttl_s,
            ],
        )
        text = answer.decode() if isinstance(answer, bytes) else str(answer)
        return _BUSY_POLL_S if text == "busy" else max(0.0, float(text))

    async def _release(self, tenant_id: str, lease: str) -> None:
        await self.redis.zrem(self._key(tenant_id, "leases"), lease)

    async def observe(self, tenant_id: str, minute_remaining: int | None) -> None:
        if minute_remaining is None or not self.limits.book_from_headers:
            return
        await self._observe(
            keys=[self._key(tenant_id, "calls")],
            args=[
                self.limits.window_s,
                self.limits.minute,
                minute_remaining,
                f"booked:{uuid.uuid4().hex}:",
            ],
        )

    async def hold(self, tenant_id: str, seconds: float) -> None:
        await self._hold(keys=[self._key(tenant_id, "hold")], args=[seconds])

    async def close(self) -> None:
        await self.redis.aclose()


def call_limiter_from_settings(settings: Settings) -> CallLimiter:
    """Redis-backed when `REDIS_URL` is set (every process shares it), else in-process."""
    limits = CallLimits.from_settings(settings)
    if settings.redis_url:
        return RedisCallLimiter.from_url(settings.redis_url, limits)
    return InProcessCallLimiter(limits)
