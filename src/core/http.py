"""The process's one outbound HTTP client."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from src.core.settings import Settings


def create_http_client(settings: Settings) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` with explicit timeouts and a pool sized for per-tenant concurrency."""
    timeout = httpx.Timeout(
        settings.http_timeout_seconds, connect=settings.http_connect_timeout_seconds
    )
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=50)
    return httpx.AsyncClient(timeout=timeout, limits=limits, headers={"User-Agent": "ledgersync"})


# A Retry-After beyond a day is nonsense from any API we call (Xero's daily limit resets within
# one); clamping also keeps `now + timedelta(seconds=...)` from overflowing.
MAX_RETRY_AFTER_SECONDS = 86_400.0


def capped_backoff(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff before retry number `attempt` (1-based): `base` doubling, at most
    `cap` (jitter is the caller's, so tests can pin it)."""
    return float(min(cap, base * 2.0 ** max(attempt - 1, 0)))


def retry_after_seconds(value: str | None, *, default: float = 1.0) -> float:
    """A `Retry-After` header (seconds, or an HTTP date) as seconds in [0, one day]."""
    if not value:
        return default
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds):
        return default
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
