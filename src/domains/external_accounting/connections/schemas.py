"""Pydantic shapes of the external-accounting API."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

# Examples for the OpenAPI document (what a caller gets, with made-up ids).
CONNECTION_EXAMPLE: dict[str, Any] = {
    "id": "2d3e4f50-6172-4839-a4b5-c6d7e8f90a1b",
    "organization_id": "6f1c2a8e-3b4d-4c5e-9f60-718293a4b5c6",
    "provider": "xero",
    "tenant_id": "a3b4c5d6-e7f8-4a9b-8c0d-1e2f3a4b5c6d",
    "tenant_name": "Demo Company (NZ)",
    "status": "active",
    "connected_at": "2026-11-30T16:20:00+00:00",
    "last_sync_at": "2026-12-01T08:00:03+00:00",
}


class ConnectionOut(BaseModel):
    """A connected provider tenant."""

    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [CONNECTION_EXAMPLE]}
    )

    id: uuid.UUID
    organization_id: uuid.UUID
    provider: str
    tenant_id: str
    tenant_name: str
    status: str
    connected_at: datetime
    last_sync_at: datetime | None


class RefusedTenantOut(BaseModel):
    """A Xero organisation of the consent that was not connected, and why."""

    tenant_id: str
    tenant_name: str
    error: str
    detail: str


class ConnectResult(BaseModel):
    """What the OAuth callback stored (and which Xero organisations it refused)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "organization_id": CONNECTION_EXAMPLE["organization_id"],
                    "connections": [CONNECTION_EXAMPLE],
                }
            ]
        }
    )

    organization_id: uuid.UUID
    connections: list[ConnectionOut]
    refused: list[RefusedTenantOut] = []


class ConnectSessionOut(BaseModel):
    """A single-use connect link to open in a browser, and when it stops working."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "https://ledgersync.example/external-accounting/connect-sessions/"
                    "3f2b9c1d8e7a4b6c9d0e1f2a3b4c5d6e/open?secret=...",
                    "expires_at": "2026-12-01T10:40:00Z",
                }
            ]
        }
    )

    url: str
    expires_at: datetime


class AuthorizeUrl(BaseModel):
    """Xero's consent page for this connect flow (`mode=json`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "authorize_url": "https://login.xero.com/identity/connect/authorize"
                    "?response_type=code&client_id=...&state=..."
                }
            ]
        }
    )

    authorize_url: str


USAGE_EXAMPLE: dict[str, Any] = {
    "connection_id": "2d3e4f50-6172-4839-a4b5-c6d7e8f90a1b",
    "days": [
        {"day": "2026-11-30", "calls": 0, "bytes": 0},
        {"day": "2026-12-01", "calls": 14, "bytes": 3_402_118},
    ],
    "month": {"month": "2026-12", "calls": 14, "bytes": 3_402_118},
}


class UsageDayOut(BaseModel):
    """A UTC day's calls to the provider's accounting API and their response bytes."""

    day: date
    calls: int
    bytes: int


class UsageMonthOut(BaseModel):
    """The current UTC month's totals: what Xero's monthly egress tiers are measured on."""

    month: str
    calls: int
    bytes: int


class ConnectionUsageOut(BaseModel):
    """A connection's API usage: every day of the window (oldest first, zero when idle) and the
    current month's totals."""

    model_config = ConfigDict(json_schema_extra={"examples": [USAGE_EXAMPLE]})

    connection_id: uuid.UUID
    days: list[UsageDayOut]
    month: UsageMonthOut
