"""Everything a running sandbox holds, in one object on `app.state.sandbox`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from src.xero_sandbox.config import SandboxConfig
from src.xero_sandbox.faults import FaultPlan
from src.xero_sandbox.identity import IdentityState
from src.xero_sandbox.limits import RateLimiter
from src.xero_sandbox.store import SandboxStore
from src.xero_sandbox.webhooks import WebhookEmitter


@dataclass
class CallStats:
    """Accounting calls as the sandbox saw them (tests and benchmarks count API calls here)."""

    by_path: Counter[str] = field(default_factory=Counter)
    by_tenant: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "total": sum(self.by_path.values()),
            "by_path": dict(self.by_path),
            "by_tenant": dict(self.by_tenant),
            "by_status": {str(k): v for k, v in self.by_status.items()},
        }

    def reset(self) -> None:
        self.by_path.clear()
        self.by_tenant.clear()
        self.by_status.clear()


@dataclass
class SandboxRuntime:
    config: SandboxConfig
    store: SandboxStore
    identity: IdentityState
    limiter: RateLimiter
    faults: FaultPlan
    stats: CallStats = field(default_factory=CallStats)
    webhooks: WebhookEmitter = field(init=False)

    def __post_init__(self) -> None:
        # The webhook clock follows the time scale in force (`PUT /_sandbox/limits` changes it).
        self.webhooks = WebhookEmitter(self.config, lambda: self.limiter.time_scale)

    @classmethod
    def build(cls, config: SandboxConfig, store: SandboxStore | None = None) -> SandboxRuntime:
        """A runtime with data generated from the config (unless a store is given)."""
        return cls(
            config=config,
            store=store or generate_store(config),
            identity=IdentityState(config),
            limiter=limiter_for(config),
            faults=FaultPlan(),
        )

    def reset(self) -> None:
        """Regenerate the data from the seed and forget tokens, faults, counters, stats and
        webhook state (back to the configured subscription)."""
        self.store = generate_store(self.config)
        self.webhooks.reset()
        self.identity.reset()
        self.limiter = limiter_for(self.config)
        self.faults = FaultPlan()
        self.stats.reset()


def generate_store(config: SandboxConfig) -> SandboxStore:
    """The configured tenants and invoices."""
    return SandboxStore.generate(config.tenants, config.invoices, config.seed, config.accounts)


def limiter_for(config: SandboxConfig) -> RateLimiter:
    """A limiter with the configured limits and fresh counters."""
    return RateLimiter(
        enabled=config.limits_enabled,
        time_scale=config.time_scale,
        minute_limit=config.minute_limit,
        day_limit=config.day_limit,
        concurrent_limit=config.concurrent_limit,
        app_minute_limit=config.app_minute_limit,
    )
