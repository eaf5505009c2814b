"""Helpers for tests that talk to the Xero sandbox."""

from __future__ import annotations

from typing import Any

import httpx

from src.xero_sandbox.config import SandboxConfig
from src.xero_sandbox.server import RunningSandbox

# Small but varied data; limits on with Xero's real numbers, so tests that need throttling set
# them through the control API and the rest stay well under 60 calls a minute per tenant... which
# a busy test session would not, hence a generous minute limit here.
SANDBOX_CONFIG = SandboxConfig(
    tenants=2, invoices=300, seed=7, auto_approve=True, minute_limit=100_000, day_limit=1_000_000
)


def tenant_ids(sandbox: RunningSandbox) -> list[str]:
    """The sandbox's tenant ids, in creation order."""
    response = httpx.get(f"{sandbox.base_url}/_sandbox/tenants")
    response.raise_for_status()
    return [t["tenant_id"] for t in response.json()]


def mint_tokens(
    sandbox: RunningSandbox, tenants: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    """Tokens for the given tenants (default all) without the OAuth dance."""
    response = httpx.post(
        f"{sandbox.base_url}/_sandbox/tokens", json={"tenant_ids": tenants, **extra}
    )
    response.raise_for_status()
    tokens: dict[str, Any] = response.json()
    return tokens
