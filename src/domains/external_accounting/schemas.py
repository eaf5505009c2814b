"""Pydantic shapes of the external-accounting API."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict


class ConnectionOut(BaseModel):
    """A connected provider tenant."""

    model_config = ConfigDict(from_attributes=True)

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

    organization_id: uuid.UUID
    connections: list[ConnectionOut]
    refused: list[RefusedTenantOut] = []


class ConnectSessionOut(BaseModel):
    """A single-use connect link to open in a browser, and when it stops working."""

    url: str
    expires_at: datetime


class AuthorizeUrl(BaseModel):
    authorize_url: str
