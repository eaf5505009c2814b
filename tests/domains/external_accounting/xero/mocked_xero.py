"""Xero behind a mocked transport, for the narrow unit tests of our Xero clients (everything else
talks to the sandbox over real HTTP)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx

from src.core.settings import Settings
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.xero.data.accounting_client import (
    RetryPolicy,
    TenantThrottle,
    XeroAccountingClient,
)
from src.domains.external_accounting.xero.data.call_limiter import (
    CallLimits,
    InProcessCallLimiter,
)


class CountingTokens:
    """Counts token requests; hands out `token-N`."""

    def __init__(self) -> None:
        self.refreshes = 0

    async def get_access_token(self, connection: Connection) -> str:
        return f"token-{self.refreshes}"

    async def refresh_after_unauthorized(self, connection: Connection, rejected_token: str) -> str:
        self.refreshes += 1
        return f"token-{self.refreshes}"


def mocked_accounting_client(
    handler: Callable[[httpx.Request], httpx.Response],
) -> tuple[XeroAccountingClient, CountingTokens, list[float]]:
    """A client whose requests `handler` answers, its tokens, and the sleeps it asked for (none
    really waited: sleeping moves a fake clock), with jitter off."""
    sleeps: list[float] = []
    clock = [0.0]  # sleeping moves this clock instead of waiting

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    tokens = CountingTokens()
    limiter = InProcessCallLimiter(CallLimits(), sleep=sleep, clock=lambda: clock[0])
    client = XeroAccountingClient(
        httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        tokens,
        Settings(xero_accounting_url="https://xero.test/api.xro/2.0"),
        throttle=TenantThrottle(limiter),
        retry=RetryPolicy(max_attempts=3),
        sleep=sleep,
    )
    client.jitter = lambda delay: 0.0  # type: ignore[method-assign]
    return client, tokens, sleeps


def unsaved_connection() -> Connection:
    """A connection that exists only in memory (the mocked Xero never asks the database)."""
    return Connection(
        id=uuid.uuid4(), organization_id=uuid.uuid4(), tenant_id="tenant-1", tenant_name="Acme"
    )


def scripted_handler(
    *responses: httpx.Response | Exception,
) -> tuple[Callable[[httpx.Request], httpx.Response], list[httpx.Request]]:
    """A transport handler giving `responses` in turn (raising the exceptions among them), and
    the list of requests it saw."""
    queue = list(responses)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return handler, seen
