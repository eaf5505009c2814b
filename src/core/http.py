"""The process's one outbound HTTP client."""

from __future__ import annotations

import httpx

from src.core.settings import Settings


def create_http_client(settings: Settings) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` with explicit timeouts and a pool sized for per-tenant concurrency."""
    timeout = httpx.Timeout(
        settings.http_timeout_seconds, connect=settings.http_connect_timeout_seconds
    )
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=50)
    return httpx.AsyncClient(timeout=timeout, limits=limits, headers={"User-Agent": "ledgersync"})
