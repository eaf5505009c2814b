"""Xero's steps of disconnecting a connection, in the order the connections service runs them
(the `DisconnectFlow` of base/disconnect.py): leave Xero, forget the tokens here, and revoke the
token set once the disconnect is committed."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.crypto import TokenCipher
from src.core.errors import LedgersyncError
from src.core.settings import Settings
from src.domains.external_accounting.base.tokens import AccessTokenProvider
from src.domains.external_accounting.connections.models import Connection, ConnectionStatus
from src.domains.external_accounting.connections.repository import ConnectionRepository
from src.domains.external_accounting.xero.auth.identity_client import XeroIdentityClient
from src.domains.external_accounting.xero.auth.revocations import (
    RevocationReason,
    TokenSetRetirement,
)

logger = logging.getLogger(__name__)


class XeroDisconnectService:
    """Disconnects one Xero connection; writes in the caller's `session`."""

    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        cipher: TokenCipher,
        identity: XeroIdentityClient,
        *,
        session_factory: async_sessionmaker[AsyncSession],
        tokens: AccessTokenProvider,
    ) -> None:
        self.session = session
        self.identity = identity
        self.tokens = tokens
        self.connections = ConnectionRepository(session)
        self.retirement = TokenSetRetirement(session, settings, cipher, identity, session_factory)

    async def leave(self, connection: Connection) -> None:
        """Delete the connection at Xero (best effort: a connection Xero already dropped still
        disconnects here; never one another organisation also relies on). Called before any
        local write, so no database lock is held across the call."""
        if (
            connection.status != ConnectionStatus.ACTIVE.value
            or not connection.provider_connection_id
        ):
            return
        shared = await self.connections.tenants_held_elsewhere(
            connection.organization_id, connection.provider, [connection.tenant_id]
        )
        if shared:
            logger.warning(
                "not deleting the connection at Xero: another organisation relies on it",
                extra={"connection_id": str(connection.id)},
            )
            return
        try:
            token = await self.tokens.get_access_token(connection)
            await self.identity.delete_connection(token, connection.provider_connection_id)
        except LedgersyncError as failure:
            logger.warning(
                "could not delete the connection at Xero; disconnecting locally",
                extra={"connection_id": str(connection.id), "error": failure.code},
            )

    async def forget(self, connection: Connection) -> None:
        """Disconnect here: erase the connection's tokens, and queue the revocation of its token
        set once no other tenant uses it (sent after the caller commits)."""
        grant_id = connection.grant_id
        connection.status = ConnectionStatus.DISCONNECTED.value
        connection.grant_id = None
        await self.session.flush()
        if grant_id is not None:
            await self.retirement.retire(
                grant_id, RevocationReason.DISCONNECTED, [connection.tenant_id]
            )

    async def send_queued_revocations(self) -> None:
        """Send the revocations this service queued (the caller's transaction has committed)."""
        await self.retirement.send_queued()
