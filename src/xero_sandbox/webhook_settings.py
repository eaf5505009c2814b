"""The webhook subscription's settings and faults, as `PUT /_sandbox/webhooks` takes them."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from pydantic import BaseModel, Field, field_validator

Rate = Annotated[float, Field(ge=0, le=1)]


class WebhookFaults(BaseModel):
    """What the network and Xero do to deliveries on a bad day (one seed, one story)."""

    drop_rate: Rate = Field(default=0.0, description="batches lost for good, never retried")
    duplicate_rate: Rate = Field(default=0.0, description="batches delivered twice")
    delay_ms: float = Field(default=0.0, ge=0, le=600_000, description="before every delivery")
    reorder_rate: Rate = Field(
        default=0.0, description="batches held back to arrive after the next one"
    )
    shuffle_events: bool = Field(default=False, description="events out of order in a batch")
    seed: int = 0


def _check_url(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as error:
        raise ValueError(f"not a URL: {error}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


class WebhookSettings(BaseModel):
    """The webhook subscription and its delivery rules. Durations marked "Xero seconds" are
    compressed by the sandbox's time scale; the timeout is real time (a receiver's latency
    does not scale)."""

    url: str | None = Field(default=None, max_length=2000)
    key: str | None = Field(default=None, min_length=1, max_length=500)
    enabled: bool = True
    batch_window_s: float = Field(default=0.5, gt=0, le=3600, description="Xero seconds")
    max_events_per_batch: int = Field(default=500, ge=1, le=100_000)
    timeout_s: float = Field(default=5.0, gt=0, le=60, description="real seconds (Xero: 5)")
    retry_base_s: float = Field(default=5.0, gt=0, le=86_400, description="Xero seconds")
    retry_max_s: float = Field(default=3600.0, gt=0, le=86_400, description="Xero seconds")
    max_attempts: int = Field(default=30, ge=1, le=1000, description="≈ 24 h at the defaults")
    faults: WebhookFaults = Field(default_factory=WebhookFaults)

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, value: str | None) -> str | None:
        return _check_url(value)

    def public(self) -> dict[str, Any]:
        """The settings as the control API shows them: never the key."""
        shown = self.model_dump(exclude={"key"})
        shown["key_set"] = self.key is not None
        return shown


class WebhookUpdate(BaseModel):
    """`PUT /_sandbox/webhooks`: the fields given replace their values (`faults` as a whole,
    reseeding it); the others stay. `"key": null` forgets the key."""

    url: str | None = Field(default=None, max_length=2000)
    key: str | None = Field(default=None, min_length=1, max_length=500)
    enabled: bool | None = None
    batch_window_s: float | None = Field(default=None, gt=0, le=3600)
    max_events_per_batch: int | None = Field(default=None, ge=1, le=100_000)
    timeout_s: float | None = Field(default=None, gt=0, le=60)
    retry_base_s: float | None = Field(default=None, gt=0, le=86_400)
    retry_max_s: float | None = Field(default=None, gt=0, le=86_400)
    max_attempts: int | None = Field(default=None, ge=1, le=1000)
    faults: WebhookFaults | None = None

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, value: str | None) -> str | None:
        return _check_url(value)
