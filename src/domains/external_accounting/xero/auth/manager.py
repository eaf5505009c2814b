"""`XeroAuthManager`: valid access tokens for connections, refreshing exactly once however many
callers (tasks or processes) find the token expired at the same moment."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.crypto import TokenCipher
from src.core.database import utcnow
from src.core.settings import Settings
from src.domains.external_accounting.exceptions import ProviderRejected, ReauthorisationRequired
from src.domains.external_accounting.models import Connection, ConnectionStatus, OAuthGrant
from src.domains.external_accounting.repository import GrantRepository
from src.domains.external_accounting.xero.auth.identity_client import (
    TokenEndpointError,
    XeroIdentityClient,
)

logger = logging.getLogger(__name__)


def connect_url(settings: Settings, organization_id: uuid.UUID) -> str:
    """Where a user goes to (re)connect Xero for an organisation."""
    return f"{settings.public_base_url}/external-accounting/xero/connect?org_id={organization_id}"


class XeroAuthManager:
    """Hands out access tokens; serialises refreshes per grant (token set).

    Refresh tokens are single use, so two refreshes of the same token set would strand the
    connection. Within a process an asyncio lock per grant queues callers; across processes the
    grant row is locked (`SELECT ... FOR UPDATE` on PostgreSQL, the write lock on SQLite) for the
    refresh, and whoever gets the lock second finds a fresh token and does not refresh. The new
    refresh token is committed before the new access token is handed out, so a crash can never
    leave us holding only a spent refresh token."""

    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        identity: XeroIdentityClient,
        cipher: TokenCipher,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.identity = identity
        self.cipher = cipher
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}

    def _fresh(self, grant: OAuthGrant) -> bool:
        margin = timedelta(seconds=self.settings.token_refresh_margin_seconds)
        expires = grant.access_token_expires_at
        return (
            bool(grant.access_token_encrypted)
            and expires is not None
            and expires - margin > utcnow()
        )

    def _reauthorise(self, connection: Connection) -> ReauthorisationRequired:
        name = connection.tenant_name or connection.tenant_id
        return ReauthorisationRequired(
            f"The Xero connection to {name} must be authorised again by an admin.",
            connect_url=connect_url(self.settings, connection.organization_id),
            connection_id=str(connection.id),
        )

    async def get_access_token(self, connection: Connection) -> str:
        """A token valid for at least the safety margin, refreshing (once, serialised) if needed."""
        if connection.status != ConnectionStatus.ACTIVE.value or connection.grant_id is None:
            raise self._reauthorise(connection)
        async with self.session_factory() as session:
            grant = await GrantRepository(session).get(connection.grant_id)
        if grant is None or grant.status != ConnectionStatus.ACTIVE.value:
            raise self._reauthorise(connection)
        if self._fresh(grant):
            return self.cipher.decrypt(grant.access_token_encrypted or "")
        return await self._refresh(connection, rejected_token=None)

    async def refresh_after_unauthorized(self, connection: Connection, rejected_token: str) -> str:
        """After a 401: refresh unless another caller already replaced `rejected_token`."""
        if connection.status != ConnectionStatus.ACTIVE.value or connection.grant_id is None:
            raise self._reauthorise(connection)
        return await self._refresh(connection, rejected_token=rejected_token)

    async def _refresh(self, connection: Connection, rejected_token: str | None) -> str:
        assert connection.grant_id is not None
        lock = self._locks.setdefault(connection.grant_id, asyncio.Lock())
        async with lock, self.session_factory() as session:
            grants = GrantRepository(session)
            grant = await grants.lock(connection.grant_id)
            if grant is None or grant.status != ConnectionStatus.ACTIVE.value:
                raise self._reauthorise(connection)
            current = (
                self.cipher.decrypt(grant.access_token_encrypted or "")
                if grant.access_token_encrypted
                else None
            )
            if current is not None and (
                current != rejected_token if rejected_token else self._fresh(grant)
            ):
                await session.commit()  # someone else refreshed while we waited for the lock
                return current
            try:
                tokens = await self.identity.refresh(
                    self.cipher.decrypt(grant.refresh_token_encrypted or "")
                )
            except TokenEndpointError as error:
                if error.error != "invalid_grant":
                    raise ProviderRejected(
                        f"Xero's token endpoint refused the refresh ({error.error}); check "
                        "XERO_CLIENT_ID and XERO_CLIENT_SECRET."
                    ) from error
                grant.status = ConnectionStatus.NEEDS_REAUTH.value
                await grants.set_connections_status(grant.id, ConnectionStatus.NEEDS_REAUTH)
                await session.commit()
                connection.status = ConnectionStatus.NEEDS_REAUTH.value
                logger.warning(
                    "xero refused the refresh token; the connection needs reauthorisation",
                    extra={"grant_id": str(grant.id), "oauth_error": error.error},
                )
                raise self._reauthorise(connection) from None
            grant.access_token_encrypted = self.cipher.encrypt(tokens.access_token)
            grant.refresh_token_encrypted = self.cipher.encrypt(tokens.refresh_token)
            grant.access_token_expires_at = tokens.expires_at
            grant.token_version += 1
            await session.commit()
            logger.info(
                "xero token refreshed",
                extra={"grant_id": str(grant.id), "token_version": grant.token_version},
            )
            return tokens.access_token
