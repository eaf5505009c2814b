"""`IntegrationFactory`: what is provider-specific, picked by provider: the sync service for a
connection, the disconnect steps, the link that (re)connects an organisation. Beside it,
`service_resources`: what a process that serves requests or runs jobs shares (engine, sessions,
the HTTP client, the call limiter, the token manager, the factory), built one way for both."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from src.core.crypto import TokenCipher
from src.core.database import create_engine, create_session_factory
from src.core.http import create_http_client
from src.core.runtime import tune_garbage_collector
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
from src.domains.external_accounting.xero.data.call_limiter import (
    CallLimiter,
    call_limiter_from_settings,
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
                return self.xero_sync_service()
            case other:
                raise UnsupportedProvider(f"No sync is available for provider {other!r}.")

    def xero_sync_service(self) -> XeroSyncService:
        """A fresh Xero sync service (its own API-call count) for what only Xero offers, such
        as the targeted syncs its webhooks drive."""
        client = XeroAccountingClient(
            self.http,
            self.xero_tokens,
            self.settings,
            self.xero_throttle,
            RetryPolicy.from_settings(self.settings),
        )
        return XeroSyncService(self.session_factory, client)

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


# The key of the process's `ServiceResources` in a job worker's additional context.
RESOURCES = "resources"


@dataclass(frozen=True)
class ServiceResources:
    """One process's shared resources: the web app's lifespan and `ledgersync worker` open them
    the same way (`service_resources`), and jobs reach them through the worker's context."""

    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    limiter: CallLimiter
    xero_throttle: TenantThrottle
    cipher: TokenCipher
    identity: XeroIdentityClient
    xero_auth_manager: xero_auth.XeroAuthManager
    factory: IntegrationFactory


@asynccontextmanager
async def service_resources(
    settings: Settings, cipher: TokenCipher
) -> AsyncIterator[ServiceResources]:
    """Open the engine, the HTTP client and the call limiter; close them in reverse order on
    leaving (whatever ran on them, jobs included, must have stopped by then)."""
    engine = create_engine(settings.database_url, echo=settings.database_echo)
    try:
        session_factory = create_session_factory(engine)
        async with create_http_client(settings) as http:
            limiter = call_limiter_from_settings(settings)
            try:
                throttle = TenantThrottle(limiter)
                identity = XeroIdentityClient(http, settings)
                tokens = xero_auth.XeroAuthManager(settings, session_factory, identity, cipher)
                factory = IntegrationFactory(
                    settings, session_factory, http, tokens, throttle, cipher=cipher
                )
                tune_garbage_collector()
                yield ServiceResources(
                    settings=settings,
                    engine=engine,
                    session_factory=session_factory,
                    http=http,
                    limiter=limiter,
                    xero_throttle=throttle,
                    cipher=cipher,
                    identity=identity,
                    xero_auth_manager=tokens,
                    factory=factory,
                )
            finally:
                await limiter.close()
    finally:
        await engine.dispose()
