"""Fault injection for the accounting API: what Xero and the network do to a client on a bad day.

Deterministic knobs (`next_*`: the next N matching calls) make tests exact; rates (with a seed)
make soak runs realistic. `skip_first` lets N matching calls through before any fault applies,
so a test can break a sync in the middle."""

from __future__ import annotations

import random
from typing import Annotated, Literal

from pydantic import BaseModel, Field

FaultKind = Literal["error", "rate_limit", "slow", "drop", "malformed"]
# An injected error is an HTTP error status; anything else could not be sent as one.
ErrorStatus = Annotated[int, Field(ge=400, le=599)]
Rate = Annotated[float, Field(ge=0, le=1)]


class FaultSettings(BaseModel):
    """What the control API accepts at `PUT /_sandbox/faults`."""

    path_contains: str = ""
    skip_first: int = Field(default=0, ge=0)
    error_rates: dict[ErrorStatus, Rate] = Field(default_factory=dict)
    next_errors: list[ErrorStatus] = Field(default_factory=list)
    rate_limit_burst: int = Field(default=0, ge=0)
    rate_limit_problem: Literal["minute", "concurrent", "appminute", "day"] = "minute"
    rate_limit_retry_after: int = Field(default=1, ge=0)
    slow_rate: float = Field(default=0.0, ge=0, le=1)
    next_slow: int = Field(default=0, ge=0)
    slow_seconds: float = Field(default=5.0, ge=0)
    drop_rate: float = Field(default=0.0, ge=0, le=1)
    next_drops: int = Field(default=0, ge=0)
    malformed_rate: float = Field(default=0.0, ge=0, le=1)
    next_malformed: int = Field(default=0, ge=0)
    # After this many matching calls every access token expires, as Xero's 30-minute tokens do
    # in the middle of a long sync.
    expire_tokens_after: int | None = Field(default=None, ge=0)
    seed: int = 0


class FaultPlan:
    """Decides, call by call, which fault (if any) to inject."""

    def __init__(self, settings: FaultSettings | None = None) -> None:
        self.configure(settings or FaultSettings())

    def configure(self, settings: FaultSettings) -> None:
        """Replace the fault settings and restart their counters."""
        self.settings = settings.model_copy(deep=True)
        self.rng = random.Random(settings.seed)
        self.seen = 0
        self.authenticated = 0
        self.injected: dict[str, int] = {}

    def tokens_expire_now(self, path: str) -> bool:
        """True once, on the matching call after `expire_tokens_after` of them."""
        s = self.settings
        if s.expire_tokens_after is None or (s.path_contains and s.path_contains not in path):
            return False
        self.authenticated += 1
        if self.authenticated != s.expire_tokens_after + 1:
            return False
        self.injected["expire_tokens"] = self.injected.get("expire_tokens", 0) + 1
        return True

    def decide(self, path: str) -> tuple[FaultKind, int] | None:
        """The fault for this call: (kind, status for errors) or None."""
        s = self.settings
        if s.path_contains and s.path_contains not in path:
            return None
        self.seen += 1
        if self.seen <= s.skip_first:
            return None
        fault = self._pick()
        if fault is not None:
            self.injected[fault[0]] = self.injected.get(fault[0], 0) + 1
        return fault

    def _pick(self) -> tuple[FaultKind, int] | None:
        s = self.settings
        if s.next_errors:
            return "error", s.next_errors.pop(0)
        if s.rate_limit_burst:
            s.rate_limit_burst -= 1
            return "rate_limit", 429
        if s.next_drops:
            s.next_drops -= 1
            return "drop", 200
        if s.next_malformed:
            s.next_malformed -= 1
            return "malformed", 200
        if s.next_slow:
            s.next_slow -= 1
            return "slow", 200
        roll = self.rng.random()
        for status, rate in s.error_rates.items():
            if roll < rate:
                return "error", status
            roll -= rate
        for kind, rate in (
            ("drop", s.drop_rate),
            ("malformed", s.malformed_rate),
            ("slow", s.slow_rate),
        ):
            if roll < rate:
                return kind, 200  # type: ignore[return-value]
            roll -= rate
        return None
