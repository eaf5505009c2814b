"""All SQL about connections, pending OAuth states and pending revocations.

Just over 400 lines: one small repository class per table of the connections package, each
short; splitting the module would only scatter the one place their SQL lives."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from datetime import date, datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from src.core.database import rows_matched, utcnow
from src.domains.external_accounting.connections.models import (
    Connection,
    ConnectionStatus,
    ConnectionUsage,
    ConsentTenant,
    OAuthGrant,
    OAuthState,
    PendingRevocation,
)
from src.domains.external_accounting.connections.usage import UsageDelta
from src.domains.external_accounting.exceptions import ConnectionNotFound
from src.domains.external_accounting.ledger.models import SyncRun


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

    async def get_many(self, connection_ids: Collection[uuid.UUID]) -> list[Connection]:
        if not connection_ids:
            return []
        result = await self.session.execute(
            select(Connection).where(Connection.id.in_(connection_ids))
        )
        return list(result.scalars())

    async def list_for_org(
        self, organization_id: uuid.UUID, status: ConnectionStatus | None = None
    ) -> list[Connection]:
        query = select(Connection).where(Connection.organization_id == organization_id)
        if status is not None:
            query = query.where(Connection.status == status.value)
        result = await self.session.execute(query.order_by(Connection.connected_at))
        return list(result.scalars())

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

    async def mark_synced(self, connection_id: uuid.UUID) -> None:
        """A sync of the connection succeeded just now."""
        await self.session.execute(
            update(Connection).where(Connection.id == connection_id).values(last_sync_at=utcnow())
        )

    async def list_all(self, organization_id: uuid.UUID | None) -> list[Connection]:
        """Every connection (or one organisation's), oldest first: the operator's list."""
        statement = select(Connection).order_by(Connection.connected_at, Connection.id)
        if organization_id is not None:
            statement = statement.where(Connection.organization_id == organization_id)
        return list((await self.session.execute(statement)).scalars())

    async def list_for_grant(self, grant_id: uuid.UUID) -> list[Connection]:
        result = await self.session.execute(
            select(Connection).where(Connection.grant_id == grant_id)
        )
        return list(result.scalars())

    async def tenants_held_elsewhere(
        self, organization_id: uuid.UUID, provider: str, tenant_ids: Iterable[str]
    ) -> set[str]:
        """Which of `tenant_ids` another organisation holds an active connection to."""
        wanted = list(set(tenant_ids))
        if not wanted:
            return set()
        result = await self.session.execute(
            select(Connection.tenant_id).where(
                Connection.organization_id != organization_id,
                Connection.provider == provider,
                Connection.tenant_id.in_(wanted),
                Connection.status == ConnectionStatus.ACTIVE.value,
            )
        )
        return set(result.scalars())


class ConsentTenantRepository:
    """The tenants each consent covered at Xero (see `ConsentTenant`)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(self, grant_id: uuid.UUID, tenant_ids: Iterable[str]) -> None:
        for tenant_id in set(tenant_ids):
            self.session.add(ConsentTenant(grant_id=grant_id, tenant_id=tenant_id))
        await self.session.flush()

    async def list_for_grant(self, grant_id: uuid.UUID) -> set[str]:
        result = await self.session.execute(
            select(ConsentTenant.tenant_id).where(ConsentTenant.grant_id == grant_id)
        )
        return set(result.scalars())


class RevocationRepository:
    """Token sets still to revoke at the provider."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, revocation: PendingRevocation) -> None:
        self.session.add(revocation)
        await self.session.flush()

    async def due(
        self, now: datetime, limit: int = 100, ids: Collection[uuid.UUID] | None = None
    ) -> list[PendingRevocation]:
        """Revocations whose next attempt is due (of `ids` only, when given)."""
        query = select(PendingRevocation).where(PendingRevocation.next_attempt_at <= now)
        if ids is not None:
            query = query.where(PendingRevocation.id.in_(list(ids)))
        result = await self.session.execute(
            query.order_by(PendingRevocation.next_attempt_at).limit(limit)
        )
        return list(result.scalars())

    async def claim(self, revocation: PendingRevocation, until: datetime) -> bool:
        """Push the next attempt to `until` unless another process already did (a conditional
        update, so two processes retrying at once do not both call the provider)."""
        result = await self.session.execute(
            update(PendingRevocation)
            .where(
                PendingRevocation.id == revocation.id,
                PendingRevocation.next_attempt_at == revocation.next_attempt_at,
            )
            .values(next_attempt_at=until)
            .execution_options(synchronize_session=False)
        )
        return rows_matched(result) == 1

    async def delete(self, revocation: PendingRevocation) -> None:
        await self.session.delete(revocation)
        await self.session.flush()

    async def flush(self) -> None:
        await self.session.flush()

    async def list_all(self) -> list[PendingRevocation]:
        return list((await self.session.execute(select(PendingRevocation))).scalars())


class SyncRequestRepository:
    """How many syncs an organisation started recently (its request rate, across processes)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def started_since(
        self, organization_id: uuid.UUID, since: datetime
    ) -> tuple[int, datetime | None]:
        """The number of runs started since `since`, and the oldest of their start times."""
        result = await self.session.execute(
            select(func.count(), func.min(SyncRun.started_at)).where(
                SyncRun.organization_id == organization_id, SyncRun.started_at >= since
            )
        )
        count, oldest = result.one()
        return int(count), oldest


class GrantRepository:
    """Token sets (one per consent)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, grant_id: uuid.UUID) -> OAuthGrant | None:
        return await self.session.get(OAuthGrant, grant_id)

    async def add(self, grant: OAuthGrant) -> None:
        self.session.add(grant)
        await self.session.flush()

    async def read(self, grant_id: uuid.UUID) -> OAuthGrant | None:
        """The grant as committed now (not as this session last saw it)."""
        result = await self.session.execute(
            select(OAuthGrant)
            .where(OAuthGrant.id == grant_id)
            .execution_options(populate_existing=True)
        )
        return result.scalar_one_or_none()

    async def claim_refresh(
        self, grant_id: uuid.UUID, *, version: int, claim_id: uuid.UUID, until: datetime
    ) -> bool:
        """Claim the right to refresh token set `version`, unless someone holds a live claim.

        A conditional UPDATE, so it is atomic on every database (SQLite has no row locks) and
        the transaction around it stays short: no lock is held across the call to Xero."""
        now = utcnow()
        result = await self.session.execute(
            update(OAuthGrant)
            .where(
                OAuthGrant.id == grant_id,
                OAuthGrant.token_version == version,
                or_(
                    OAuthGrant.refresh_claimed_until.is_(None),
                    OAuthGrant.refresh_claimed_until < now,
                ),
            )
            .values(refresh_claim_id=claim_id, refresh_claimed_until=until)
            .execution_options(synchronize_session=False)
        )
        return rows_matched(result) == 1

    async def store_refreshed(
        self,
        grant_id: uuid.UUID,
        *,
        version: int,
        claim_id: uuid.UUID,
        access_token_encrypted: str,
        refresh_token_encrypted: str,
        expires_at: datetime,
    ) -> bool:
        """Write the new token set as version `version + 1` and release the claim; False when
        the claim was lost (it expired and another process took over)."""
        result = await self.session.execute(
            update(OAuthGrant)
            .where(
                OAuthGrant.id == grant_id,
                OAuthGrant.token_version == version,
                OAuthGrant.refresh_claim_id == claim_id,
            )
            .values(
                access_token_encrypted=access_token_encrypted,
                refresh_token_encrypted=refresh_token_encrypted,
                access_token_expires_at=expires_at,
                token_version=version + 1,
                refresh_claim_id=None,
                refresh_claimed_until=None,
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        return rows_matched(result) == 1

    async def release_claim(self, grant_id: uuid.UUID, claim_id: uuid.UUID) -> None:
        """Give up a refresh claim (the refresh failed; the stored token set is unchanged)."""
        await self.session.execute(
            update(OAuthGrant)
            .where(OAuthGrant.id == grant_id, OAuthGrant.refresh_claim_id == claim_id)
            .values(refresh_claim_id=None, refresh_claimed_until=None)
            .execution_options(synchronize_session=False)
        )

    async def mark_needs_reauth(self, grant_id: uuid.UUID) -> None:
        """Xero refused the refresh token: the grant and every connection of it need consent."""
        await self.session.execute(
            update(OAuthGrant)
            .where(OAuthGrant.id == grant_id)
            .values(
                status=ConnectionStatus.NEEDS_REAUTH.value,
                refresh_claim_id=None,
                refresh_claimed_until=None,
            )
            .execution_options(synchronize_session=False)
        )
        await self.set_connections_status(grant_id, ConnectionStatus.NEEDS_REAUTH)

    async def reencrypt(
        self,
        grant_id: uuid.UUID,
        *,
        version: int,
        access_token_encrypted: str | None,
        refresh_token_encrypted: str | None,
    ) -> bool:
        """Replace the ciphertexts of token set `version` (same secrets, another key); False
        when a refresh wrote a newer version meanwhile."""
        result = await self.session.execute(
            update(OAuthGrant)
            .where(OAuthGrant.id == grant_id, OAuthGrant.token_version == version)
            .values(
                access_token_encrypted=access_token_encrypted,
                refresh_token_encrypted=refresh_token_encrypted,
            )
        )
        return rows_matched(result) == 1

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

    async def list_ids(self) -> list[uuid.UUID]:
        return list((await self.session.execute(select(OAuthGrant.id))).scalars())

    async def idle(self, before: datetime, limit: int) -> list[tuple[OAuthGrant, Connection]]:
        """Active token sets last issued before `before` (their access token, issued with the
        refresh token, expired before it; or no expiry known), each with one of its active
        connections, the longest idle first."""
        result = await self.session.execute(
            select(OAuthGrant, Connection)
            .join(Connection, Connection.grant_id == OAuthGrant.id)
            .where(
                OAuthGrant.status == ConnectionStatus.ACTIVE.value,
                OAuthGrant.refresh_token_encrypted.is_not(None),
                or_(
                    OAuthGrant.access_token_expires_at.is_(None),
                    OAuthGrant.access_token_expires_at < before,
                ),
                Connection.status == ConnectionStatus.ACTIVE.value,
            )
            .order_by(OAuthGrant.access_token_expires_at, OAuthGrant.id, Connection.id)
        )
        chosen: dict[uuid.UUID, tuple[OAuthGrant, Connection]] = {}
        for grant, connection in result.all():
            chosen.setdefault(grant.id, (grant, connection))
        return list(chosen.values())[:limit]


class OAuthStateRepository:
    """Pending connects."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, state: OAuthState) -> None:
        self.session.add(state)
        await self.session.flush()

    async def get(self, state_id: uuid.UUID) -> OAuthState | None:
        result = await self.session.execute(
            select(OAuthState)
            .where(OAuthState.id == state_id)
            .execution_options(populate_existing=True)
        )
        return result.scalar_one_or_none()

    async def consume(self, state_id: uuid.UUID, now: datetime) -> bool:
        """Mark the state used; False if another callback got there first. A conditional
        update, not a lock: SQLite has no `FOR UPDATE`, and this is atomic on every database."""
        result = await self.session.execute(
            update(OAuthState)
            .where(OAuthState.id == state_id, OAuthState.consumed_at.is_(None))
            .values(consumed_at=now)
            .execution_options(synchronize_session=False)
        )
        return rows_matched(result) == 1

    async def open_link(
        self,
        state_id: uuid.UUID,
        *,
        now: datetime,
        secret_hash: str,
        browser_binding_hash: str,
        code_verifier_encrypted: str,
        expires_at: datetime,
    ) -> bool:
        """Bind a connect session's state to the browser opening it, once."""
        result = await self.session.execute(
            update(OAuthState)
            .where(
                OAuthState.id == state_id,
                OAuthState.link_opened_at.is_(None),
                OAuthState.expires_at > now,
            )
            .values(
                link_opened_at=now,
                secret_hash=secret_hash,
                browser_binding_hash=browser_binding_hash,
                code_verifier_encrypted=code_verifier_encrypted,
                expires_at=expires_at,
            )
            .execution_options(synchronize_session=False)
        )
        return rows_matched(result) == 1

    async def purge_expired(self, before: datetime) -> int:
        """Delete states (and connect sessions) that expired before `before`."""
        result = await self.session.execute(
            delete(OAuthState).where(OAuthState.expires_at < before)
        )
        return rows_matched(result)

    async def list_all(self) -> list[OAuthState]:
        return list((await self.session.execute(select(OAuthState))).scalars())


class UsageRepository:
    """`connection_usage`: calls and bytes per connection and UTC day."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, deltas: Collection[UsageDelta]) -> None:
        """Add to each (connection, day) row, creating it on the day's first call: one upsert
        statement for the batch."""
        if not deltas:
            return
        postgres = self.session.get_bind().dialect.name == "postgresql"
        insert = postgres_insert if postgres else sqlite_insert
        statement = insert(ConnectionUsage).values(
            [
                {"connection_id": d.connection_id, "day": d.day, "calls": d.calls, "bytes": d.bytes}
                for d in deltas
            ]
        )
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=["connection_id", "day"],
                set_={
                    "calls": ConnectionUsage.calls + statement.excluded.calls,
                    "bytes": ConnectionUsage.bytes + statement.excluded.bytes,
                },
            )
        )

    async def days(self, connection_id: uuid.UUID, since: date) -> list[ConnectionUsage]:
        """The connection's days from `since` on that had calls, oldest first."""
        result = await self.session.scalars(
            select(ConnectionUsage)
            .where(ConnectionUsage.connection_id == connection_id, ConnectionUsage.day >= since)
            .order_by(ConnectionUsage.day)
        )
        return list(result)
