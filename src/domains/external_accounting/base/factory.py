"""`IntegrationFactory`: what is provider-specific, picked by provider: the sync service for a
connection, the disconnect steps, the link that (re)connects an organisation."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.crypto import TokenCipher
from src.core.settings import Settings
from src.domains.external_accounting.base.disconnect import DisconnectFlow
from src.domains.external_accounting.base.sync import SyncService
from src.domains.external_accounting.base.tokens import AccessTokenProvider
from src.domains.external_accounting.connections.models import Connection, Provider
from src.domains.external_accounting.exceptions import UnsupportedProvider
from src.domains.external_accounting.xero.auth import auth_manager as xero_auth
from src.domains.external_accounting.xero.auth.disconnect_service import XeroDisconnectService
from src.domains.external_accounting.xero.auth.identity_client import XeroIdentityClient
from src.domains.external_accounting.xero.data.accounting_client import (
    RetryPolicy,
    TenantThrottle,
    XeroAccountingClient,
)
from src.domains.external_accounting.xero.data.sync_service import XeroSyncService


class IntegrationFactory:
    """Builds provider-specific services; adding a provider is a new `case`, not a route change."""

    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        xero_tokens: AccessTokenProvider,
        xero_throttle: TenantThrottle,
        *,
        cipher: TokenCipher | None = None,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.http = http
        self.xero_tokens = xero_tokens
        self.xero_throttle = xero_throttle
        # Only connect flows need it (they store and revoke tokens); a sync worker has none.
        self.cipher = cipher

    def get_sync_service(self, connection: Connection) -> SyncService:
        """A fresh sync service (with its own API-call count) for the connection's provider."""
        match connection.provider:
            case Provider.XERO.value:
                client = XeroAccountingClient(
                    self.http,
                    self.xero_tokens,
                    self.settings,
                    self.xero_throttle,
                    RetryPolicy.from_settings(self.settings),
                )
                return XeroSyncService(self.session_factory, client)
            case other:
                raise UnsupportedProvider(f"No sync is available for provider {other!r}.")

    def get_disconnect_flow(self, provider: str, session: AsyncSession) -> DisconnectFlow:
        """The provider's disconnect steps, writing in the caller's `session`."""
        if self.cipher is None:
            raise RuntimeError("IntegrationFactory was built without a cipher: no disconnect flow.")
        match provider:
            case Provider.XERO.value:
                return XeroDisconnectService(
                    session,
                    self.settings,
                    self.cipher,
                    XeroIdentityClient(self.http, self.settings),
                    session_factory=self.session_factory,
                    tokens=self.xero_tokens,
                )
            case other:
                raise UnsupportedProvider(
                    f"No disconnect flow is available for provider {other!r}."
                )

    def connect_url(self, provider: str, organization_id: uuid.UUID) -> str:
        """Where a user goes to (re)connect the provider for an organisation."""
        match provider:
            case Provider.XERO.value:
                return xero_auth.connect_url(self.settings, organization_id)
            case other:
                raise UnsupportedProvider(f"No connection is available for provider {other!r}.")
