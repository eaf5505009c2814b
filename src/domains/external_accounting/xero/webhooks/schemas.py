"""What Xero's webhook deliveries look like (`xero-webhooks.yaml`), as strict models: a body
that is not one is refused as a whole (400), while an event of a category or type Xero has not
documented is kept out of our work (Xero adds categories without notice)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

# Xero's event types: archiving or voiding arrives as UPDATE.
EVENT_TYPES = ("CREATE", "UPDATE")


def _utc(value: datetime) -> datetime:
    """Xero writes `eventDateUtc` without a zone (`2025-12-02T00:44:09.923`): it is UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the event time is out of range once converted to UTC") from None


ShortText = Annotated[str, StringConstraints(max_length=40)]


class XeroEventIn(BaseModel):
    """One event: what changed (a resource of a category), in which tenant, and when. Never the
    record itself."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    resource_id: uuid.UUID = Field(alias="resourceId")
    resource_url: Annotated[str, StringConstraints(max_length=2000)] | None = Field(
        None, alias="resourceUrl"
    )
    event_at: Annotated[datetime, AfterValidator(_utc)] = Field(alias="eventDateUtc")
    event_type: ShortText = Field(alias="eventType")
    event_category: ShortText = Field(alias="eventCategory")
    # An organisation's id, or for SUBSCRIPTION events our application's.
    tenant_id: uuid.UUID = Field(alias="tenantId")
    tenant_type: ShortText | None = Field(None, alias="tenantType")


class XeroDeliveryIn(BaseModel):
    """A delivery: a batch of events. Intent-to-receive checks send one with no events."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    events: list[XeroEventIn] = Field(max_length=10_000)
    first_event_sequence: int | None = Field(None, alias="firstEventSequence")
    last_event_sequence: int | None = Field(None, alias="lastEventSequence")
    entropy: Annotated[str, StringConstraints(max_length=200)] | None = None


# The request body as the OpenAPI document shows it (the route reads the raw bytes itself: the
# signature is over them, so FastAPI must not parse the body first).
DELIVERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["events"],
    "properties": {
        "events": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "resourceId",
                    "eventDateUtc",
                    "eventType",
                    "eventCategory",
                    "tenantId",
                ],
                "properties": {
                    "resourceUrl": {"type": "string", "format": "uri"},
                    "resourceId": {"type": "string", "format": "uuid"},
                    "eventDateUtc": {"type": "string", "format": "date-time"},
                    "eventType": {"type": "string", "enum": list(EVENT_TYPES)},
                    "eventCategory": {
                        "type": "string",
                        "enum": ["INVOICE", "CREDITNOTE", "CONTACT", "SUBSCRIPTION"],
                    },
                    "tenantId": {"type": "string", "format": "uuid"},
                    "tenantType": {"type": "string", "enum": ["ORGANISATION", "APPLICATION"]},
                },
            },
        },
        "firstEventSequence": {"type": "integer"},
        "lastEventSequence": {"type": "integer"},
        "entropy": {"type": "string"},
    },
}

DELIVERY_EXAMPLE: dict[str, Any] = {
    "events": [
        {
            "resourceUrl": "https://api.xero.com/api.xro/2.0/Invoices/"
            "55d84274-a3da-4829-a7c0-0cab601b95cc",
            "resourceId": "55d84274-a3da-4829-a7c0-0cab601b95cc",
            "eventDateUtc": "2026-12-02T00:44:09.923",
            "eventType": "UPDATE",
            "eventCategory": "INVOICE",
            "tenantId": "aef86862-2015-4b6b-88bc-d89032cecc50",
            "tenantType": "ORGANISATION",
        }
    ],
    "firstEventSequence": 76,
    "lastEventSequence": 76,
    "entropy": "FXNGWLCCGVANWHKILRUB",
}
