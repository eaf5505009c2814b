"""Xero's rate limits: per tenant 5 in flight, 60 a minute and 5,000 a day; per app 10,000 a
minute. Fixed windows that start with a tenant's first call, so tenants reset at different times.
`time_scale` compresses time: at 60, a Xero minute lasts one real second."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


@dataclass
class Window:
    """A fixed window counter."""

    length_s: float
    started: float = 0.0
    count: int = 0

    def roll(self, now: float) -> None:
        if now - self.started >= self.length_s:
            self.started, self.count = now, 0

    def retry_after(self, now: float) -> int:
        return max(1, math.ceil(self.started + self.length_s - now))


@dataclass
class TenantCounters:
    minute: Window
    day: Window
    in_flight: int = 0


@dataclass
class Rejection:
    """Why a call was refused: `problem` is Xero's X-Rate-Limit-Problem value."""

    problem: str
    retry_after: int


@dataclass
class RateLimiter:
    """Counts every accounting call; refuses over-limit ones when `enabled`."""

    enabled: bool = True
    time_scale: float = 1.0
    minute_limit: int = 60
    day_limit: int = 5000
    concurrent_limit: int = 5
    app_minute_limit: int = 10_000
    tenants: dict[str, TenantCounters] = field(default_factory=dict)
    app_minute: Window = field(default_factory=lambda: Window(60.0))

    def _minute_s(self) -> float:
        return 60.0 / self.time_scale

    def _counters(self, tenant_id: str) -> TenantCounters:
        counters = self.tenants.get(tenant_id)
        if counters is None:
            counters = TenantCounters(Window(self._minute_s()), Window(86_400.0 / self.time_scale))
            self.tenants[tenant_id] = counters
        return counters

    def acquire(self, tenant_id: str) -> Rejection | None:
        """Count a call for `tenant_id`, or say why it is refused (it then counts for nothing)."""
        now = time.monotonic()
        counters = self._counters(tenant_id)
        counters.minute.roll(now)
        counters.day.roll(now)
        self.app_minute.length_s = self._minute_s()
        self.app_minute.roll(now)
        if self.enabled:
            if counters.day.count >= self.day_limit:
                return Rejection("day", counters.day.retry_after(now))
            if self.app_minute.count >= self.app_minute_limit:
                return Rejection("appminute", self.app_minute.retry_after(now))
            if counters.minute.count >= self.minute_limit:
                return Rejection("minute", counters.minute.retry_after(now))
            if counters.in_flight >= self.concurrent_limit:
                return Rejection("concurrent", 1)
        counters.minute.count += 1
        counters.day.count += 1
        self.app_minute.count += 1
        counters.in_flight += 1
        return None

    def release(self, tenant_id: str) -> None:
        """A call admitted by `acquire` has finished."""
        self._counters(tenant_id).in_flight -= 1

    def headers(self, tenant_id: str) -> list[tuple[bytes, bytes]]:
        """The remaining-budget headers Xero puts on every accounting response."""
        counters = self._counters(tenant_id)
        return [
            (b"x-daylimit-remaining", str(max(0, self.day_limit - counters.day.count)).encode()),
            (
                b"x-minlimit-remaining",
                str(max(0, self.minute_limit - counters.minute.count)).encode(),
            ),
            (
                b"x-appminlimit-remaining",
                str(max(0, self.app_minute_limit - self.app_minute.count)).encode(),
            ),
        ]

    def reset(self) -> None:
        """Forget every counter."""
        self.tenants.clear()
        self.app_minute = Window(self._minute_s())
