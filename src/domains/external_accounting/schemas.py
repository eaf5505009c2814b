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


class ConnectResult(BaseModel):
    """What the OAuth callback stored."""

    organization_id: uuid.UUID
    connections: list[ConnectionOut]


class AuthorizeUrl(BaseModel):
    authorize_url: str
