"""`IntegrationFactory`: the sync service for a connection's provider."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.settings import Settings
from src.domains.external_accounting.base.sync import SyncService
from src.domains.external_accounting.base.tokens import AccessTokenProvider
from src.domains.external_accounting.connections.models import Connection, Provider
from src.domains.external_accounting.exceptions import UnsupportedProvider
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
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.http = http
        self.xero_tokens = xero_tokens
        self.xero_throttle = xero_throttle

    def get_sync_service(self, connection: Connection) -> SyncService:
        """A fresh sync service (with its own API-call count) for the connection's provider."""
        match connection.provider:
            case Provider.XERO.value:
                retry = RetryPolicy(
                    max_attempts=self.settings.xero_retry_attempts,
                    base_delay_s=self.settings.xero_retry_base_delay_seconds,
                    max_delay_s=self.settings.xero_retry_max_delay_seconds,
                    daily_reserve=self.settings.xero_daily_reserve,
                    reserve_pause_s=self.settings.xero_reserve_pause_seconds,
                )
                client = XeroAccountingClient(
                    self.http, self.xero_tokens, self.settings, self.xero_throttle, retry
                )
                return XeroSyncService(self.session_factory, client)
            case other:
                raise UnsupportedProvider(f"No sync is available for provider {other!r}.")
