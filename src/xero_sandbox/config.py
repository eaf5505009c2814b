"""The sandbox's knobs (the `ledgersync sandbox serve` options map onto these)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class SandboxConfig(BaseModel):
    """How the sandbox generates data and which of Xero's limits it enforces."""

    tenants: int = Field(default=2, ge=0, le=1000)
    invoices: int = Field(default=5000, ge=0, le=5_000_000)
    accounts: int | None = Field(default=None, ge=1, le=100_000)
    seed: int = 7
    auto_approve: bool = False
    limits_enabled: bool = True
    time_scale: float = Field(default=1.0, gt=0, le=100_000)
    latency_ms: float = Field(default=0.0, ge=0)
    access_token_ttl_s: int = Field(default=1800, ge=1)
    # Xero accepts a spent refresh token again for 30 minutes (its answer may have been lost).
    refresh_grace_s: float = Field(default=1800.0, ge=0)
    client_id: str = "sandbox-client-id"
    client_secret: str = "sandbox-client-secret"
    day_limit: int = Field(default=5000, ge=1)
    minute_limit: int = Field(default=60, ge=1)
    concurrent_limit: int = Field(default=5, ge=1)
    app_minute_limit: int = Field(default=10_000, ge=1)
    # Webhooks (see webhooks.py): where Xero POSTs its event batches and the key that signs
    # them; no deliveries until both are set. Durations are Xero seconds, compressed by
    # `time_scale` like the rate-limit minute.
    webhook_url: str | None = None
    webhook_key: str | None = Field(default=None, min_length=1, repr=False)
    webhook_batch_window_s: float = Field(default=0.5, gt=0, le=3600)
    webhook_max_attempts: int = Field(default=30, ge=1, le=1000)

    def client_settings(self, base_url: str) -> dict[str, Any]:
        """What a Xero client needs to talk to this sandbox at `base_url`, keyed by ledgersync's
        setting names: every Xero endpoint at the sandbox's path for it, and the client's
        credentials. (Plain strings: the sandbox imports nothing from the service.)"""
        return {
            "xero_authorize_url": f"{base_url}/identity/connect/authorize",
            "xero_token_url": f"{base_url}/connect/token",
            "xero_revocation_url": f"{base_url}/connect/revocation",
            "xero_connections_url": f"{base_url}/connections",
            "xero_accounting_url": f"{base_url}/api.xro/2.0",
            "xero_client_id": self.client_id,
            "xero_client_secret": self.client_secret,
            # The client paces itself by the limits this sandbox enforces (none when they are off).
            "xero_pacing": self.limits_enabled,
            "xero_minute_limit": self.minute_limit,
            "xero_concurrent_limit": self.concurrent_limit,
            "xero_app_minute_limit": self.app_minute_limit,
            "xero_minute_seconds": 60.0 / self.time_scale,
        }
