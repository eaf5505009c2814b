"""What the webhook-endpoint API takes and sends."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from src.domains.external_accounting.outbound.models import EventType

ENDPOINT_IN_EXAMPLE: dict[str, Any] = {
    "url": "https://erp.example.com/hooks/ledgersync",
    "event_types": ["sync.finished", "sync.failed", "connection.needs_reauth"],
}
SECRET_EXAMPLE = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENDPOINT_OUT_EXAMPLE: dict[str, Any] = {
    "id": "7b0c1d2e-3f40-4152-8637-48596a7b8c9d",
    "url": "https://erp.example.com/hooks/ledgersync",
    "event_types": ["sync.finished", "sync.failed", "connection.needs_reauth"],
    "created_at": "2026-12-01T08:00:00Z",
}


class WebhookEndpointIn(BaseModel):
    """A receiver to register: an https URL (http only to localhost, unless the service allows
    it) and the events it wants (at least one)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [ENDPOINT_IN_EXAMPLE]})

    url: str = Field(min_length=1, max_length=2048, description="Where events are POSTed")
    event_types: list[EventType] = Field(min_length=1, description="The events to receive")


class WebhookEndpointOut(BaseModel):
    """A registered endpoint, without its secret."""

    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [ENDPOINT_OUT_EXAMPLE]}
    )

    id: uuid.UUID
    url: str
    event_types: list[str]
    created_at: datetime


class WebhookEndpointCreated(WebhookEndpointOut):
    """The endpoint just registered, with the signing secret: shown this once, never again."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**ENDPOINT_OUT_EXAMPLE, "secret": SECRET_EXAMPLE}]}
    )

    secret: str = Field(
        description="The Standard Webhooks signing secret (`whsec_...`); store it now"
    )


class WebhookEndpointList(BaseModel):
    """An organisation's endpoints, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"endpoints": [ENDPOINT_OUT_EXAMPLE]}]}
    )

    endpoints: list[WebhookEndpointOut]


class DeliveryAttemptOut(BaseModel):
    """One POST of a delivery."""

    model_config = ConfigDict(from_attributes=True)

    attempt: int
    attempted_at: datetime
    status_code: int | None = Field(description="The endpoint's HTTP status; null: no answer")
    error: str | None = Field(description="Why it was not delivered; null: delivered")
    duration_ms: int


class DeliveryOut(BaseModel):
    """An event owed to the endpoint and what became of it."""

    id: uuid.UUID = Field(description="The `webhook-id` header, the same on every attempt")
    event_type: str
    status: str = Field(description="pending, delivered, or failed (attempts ran out)")
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: list[DeliveryAttemptOut]


DELIVERY_LOG_EXAMPLE: dict[str, Any] = {
    "endpoint_id": ENDPOINT_OUT_EXAMPLE["id"],
    "deliveries": [
        {
            "id": "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
            "event_type": "sync.finished",
            "status": "delivered",
            "attempts": 2,
            "next_attempt_at": None,
            "created_at": "2026-12-01T08:00:05Z",
            "delivered_at": "2026-12-01T08:00:16Z",
            "attempt_log": [
                {
                    "attempt": 1,
                    "attempted_at": "2026-12-01T08:00:06Z",
                    "status_code": 500,
                    "error": "HTTP 500",
                    "duration_ms": 41,
                },
                {
                    "attempt": 2,
                    "attempted_at": "2026-12-01T08:00:16Z",
                    "status_code": 200,
                    "error": None,
                    "duration_ms": 38,
                },
            ],
        }
    ],
}


class DeliveryLog(BaseModel):
    """An endpoint's latest deliveries, newest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [DELIVERY_LOG_EXAMPLE]})

    endpoint_id: uuid.UUID
    deliveries: list[DeliveryOut]
