"""All SQL about connections and pending OAuth states."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from src.domains.external_accounting.exceptions import ConnectionNotFound
from src.domains.external_accounting.models import (
    Connection,
    ConnectionStatus,
    OAuthGrant,
    OAuthState,
)


class ConnectionRepository:
    """Connections of customer organisations to provider tenants."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, connection_id: uuid.UUID) -> Connection | None:
        return await self.session.get(Connection, connection_id)

    async def get_for_org(self, organization_id: uuid.UUID, connection_id: uuid.UUID) -> Connection:
        """The connection, if it belongs to the organisation (404 otherwise, never 403: a caller
        learns nothing about other organisations' connections)."""
        connection = await self.session.get(Connection, connection_id)
        if connection is None or connection.organization_id != organization_id:
            raise ConnectionNotFound(f"Connection {connection_id} does not exist.")
        return connection

    async def list_for_org(
        self, organization_id: uuid.UUID, status: ConnectionStatus | None = None
    ) -> list[Connection]:
        query = select(Connection).where(Connection.organization_id == organization_id)
        if status is not None:
            query = query.where(Connection.status == status.value)
        result = await self.session.execute(query.order_by(Connection.connected_at))
        return list(result.scalars())

    async def list_all(self) -> list[Connection]:
        return list((await self.session.execute(select(Connection))).scalars())

    async def get_by_tenant(
        self, organization_id: uuid.UUID, provider: str, tenant_id: str
    ) -> Connection | None:
        result = await self.session.execute(
            select(Connection).where(
                Connection.organization_id == organization_id,
                Connection.provider == provider,
                Connection.tenant_id == tenant_id,
            )
        )
        return result.scalar_one_or_none()

    async def add(self, connection: Connection) -> None:
        self.session.add(connection)
        await self.session.flush()

    async def list_for_grant(self, grant_id: uuid.UUID) -> list[Connection]:
        result = await self.session.execute(
            select(Connection).where(Connection.grant_id == grant_id)
        )
        return list(result.scalars())


class GrantRepository:
    """Token sets (one per consent)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, grant_id: uuid.UUID) -> OAuthGrant | None:
        return await self.session.get(OAuthGrant, grant_id)

    async def add(self, grant: OAuthGrant) -> None:
        self.session.add(grant)
        await self.session.flush()

    async def lock(self, grant_id: uuid.UUID) -> OAuthGrant | None:
        """The grant row, locked for this transaction against every other process.

        PostgreSQL: `SELECT ... FOR UPDATE`. SQLite has no row locks; a no-op UPDATE takes the
        database's write lock, which other writers wait for (busy_timeout) until we commit."""
        if self.session.get_bind().dialect.name == "sqlite":
            await self.session.execute(
                update(OAuthGrant)
                .where(OAuthGrant.id == grant_id)
                .values(token_version=OAuthGrant.token_version)
            )
        result = await self.session.execute(
            select(OAuthGrant)
            .where(OAuthGrant.id == grant_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return result.scalar_one_or_none()

    async def set_connections_status(self, grant_id: uuid.UUID, status: ConnectionStatus) -> None:
        """Give every connection of the grant the same status (a grant fails for all of them)."""
        await self.session.execute(
            update(Connection).where(Connection.grant_id == grant_id).values(status=status.value)
        )

    async def delete_if_unused(self, grant_id: uuid.UUID) -> bool:
        """Delete a grant no connection uses any more."""
        used = await self.session.execute(
            select(Connection.id).where(Connection.grant_id == grant_id).limit(1)
        )
        if used.first() is not None:
            return False
        await self.session.execute(delete(OAuthGrant).where(OAuthGrant.id == grant_id))
        return True

    async def list_all(self) -> list[OAuthGrant]:
        return list((await self.session.execute(select(OAuthGrant))).scalars())


class OAuthStateRepository:
    """Pending connects."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, state: OAuthState) -> None:
        self.session.add(state)
        await self.session.flush()

    async def lock(self, state_id: uuid.UUID) -> OAuthState | None:
        """The state row, locked so two callbacks cannot both consume it."""
        result = await self.session.execute(
            select(OAuthState).where(OAuthState.id == state_id).with_for_update()
        )
        return result.scalar_one_or_none()

    async def list_all(self) -> list[OAuthState]:
        return list((await self.session.execute(select(OAuthState))).scalars())
