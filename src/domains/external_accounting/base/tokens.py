"""The seam between connecting (OAuth) and syncing: callers of a provider ask it for tokens."""

from __future__ import annotations

from typing import Protocol

from src.domains.external_accounting.connections.models import Connection


class AccessTokenProvider(Protocol):
    """Hands out valid access tokens for a connection (XeroAuthManager implements it)."""

    async def get_access_token(self, connection: Connection) -> str:
        """A token valid for at least a safety margin, refreshing (once, serialised) if needed."""
        ...

    async def refresh_after_unauthorized(self, connection: Connection, rejected_token: str) -> str:
        """Called after the provider answered 401 to `rejected_token`: refresh unless another caller
        already did, and return the current token. Raises ReauthorisationRequired when refresh is
        impossible (spent or revoked refresh token)."""
        ...
