"""Revoking token sets at Xero so none we stopped using stays live there: each revocation is
stored (token encrypted) before it is attempted, and one Xero did not confirm is retried with
capped exponential backoff until it succeeds or the token could no longer be used anyway.

There is no job queue yet: retries run in the app's lifespan (at start-up and every
`maintenance_interval_seconds`) and from `ledgersync revocations retry`."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.crypto import DecryptionFailed, TokenCipher
from src.core.database import utcnow
from src.core.errors import LedgersyncError
from src.core.settings import Settings
from src.domains.external_accounting.connections.models import (
    ConnectionStatus,
    PendingRevocation,
    Provider,
)
from src.domains.external_accounting.connections.repository import (
    ConnectionRepository,
    ConsentTenantRepository,
    GrantRepository,
    OAuthStateRepository,
    RevocationRepository,
)
from src.domains.external_accounting.xero.auth.identity_client import XeroIdentityClient

logger = logging.getLogger(__name__)

# Xero expires a refresh token unused for 60 days: after that there is nothing left to revoke.
REFRESH_TOKEN_LIFETIME = timedelta(days=60)


class RevocationReason(StrEnum):
    REPLACED = "replaced"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class MaintenanceReport:
    """What one maintenance pass did."""

    states_purged: int
    revoked: int
    still_pending: int


class XeroRevocations:
    """Revoke now, remember what failed, retry it later."""

    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        cipher: TokenCipher,
        identity: XeroIdentityClient,
    ) -> None:
        self.settings = settings
        self.cipher = cipher
        self.identity = identity
        self.repository = RevocationRepository(session)

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failure (doubling from the base, capped)."""
        base = self.settings.revocation_retry_base_seconds
        seconds = min(base * 2 ** max(attempts - 1, 0), self.settings.revocation_retry_max_seconds)
        return timedelta(seconds=seconds)

    async def queue(
        self,
        *,
        refresh_token_encrypted: str,
        organization_id: uuid.UUID | None,
        reason: RevocationReason,
    ) -> uuid.UUID:
        """Store a revocation in the caller's transaction; `send_revocations` sends it once that
        has committed. Never call Xero inside a write transaction: it would hold SQLite's write
        lock for the call, and an irreversible revocation must not precede a commit that may
        still fail (the connection would stay active here on a token set Xero has dropped)."""
        pending = PendingRevocation(
            provider=Provider.XERO.value,
            organization_id=organization_id,
            reason=reason.value,
            refresh_token_encrypted=refresh_token_encrypted,
            next_attempt_at=utcnow(),
        )
        await self.repository.add(pending)
        return pending.id

    async def attempt(self, pending: PendingRevocation) -> bool:
        """Call Xero once for `pending`: forget it when confirmed, else schedule the next try."""
        try:
            token = self.cipher.decrypt(pending.refresh_token_encrypted)
        except DecryptionFailed:
            # The key it was encrypted with has been retired: nothing can ever send it.
            logger.error(
                "a pending revocation can no longer be decrypted; dropped",
                extra={"revocation_id": str(pending.id)},
            )
            await self.repository.delete(pending)
            return False
        try:
            await self.identity.revoke(token)
        except LedgersyncError as failure:
            now = utcnow()
            pending.attempts += 1
            pending.last_error = failure.code
            pending.next_attempt_at = now + self.backoff(pending.attempts)
            if now - pending.created_at > REFRESH_TOKEN_LIFETIME:
                logger.warning(
                    "giving up a revocation: the refresh token has expired at Xero by now",
                    extra={"revocation_id": str(pending.id), "attempts": pending.attempts},
                )
                await self.repository.delete(pending)
                return False
            logger.warning(
                "Xero did not confirm a token revocation; will retry",
                extra={
                    "revocation_id": str(pending.id),
                    "attempts": pending.attempts,
                    "error": failure.code,
                    "retry_at": pending.next_attempt_at.isoformat(),
                },
            )
            await self.repository.flush()
            return False
        logger.info(
            "token set revoked at Xero",
            extra={"revocation_id": str(pending.id), "reason": pending.reason},
        )
        await self.repository.delete(pending)
        return True


class TokenSetRetirement:
    """Retires token sets no connection uses any more, in the caller's transaction: queues their
    revocation (unless another organisation relies on the consent) and erases them here.
    `send_queued` sends what was queued, once the caller's transaction has committed."""

    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        cipher: TokenCipher,
        identity: XeroIdentityClient,
        session_factory: async_sessionmaker[AsyncSession],
    ) -> None:
        self.settings = settings
        self.cipher = cipher
        self.identity = identity
        # Revocations are sent in sessions of their own, after the caller's has committed.
        self.session_factory = session_factory
        self.connections = ConnectionRepository(session)
        self.grants = GrantRepository(session)
        self.consent_tenants = ConsentTenantRepository(session)
        self.revocations = XeroRevocations(session, settings, cipher, identity)
        self.queued: list[uuid.UUID] = []

    async def retire(
        self, grant_id: uuid.UUID, reason: RevocationReason, tenant_ids: Iterable[str] = ()
    ) -> None:
        """Revoke a token set no connection uses any more (now, or queued for retries), unless
        that would remove a Xero connection another organisation relies on; erase it here."""
        grant = await self.grants.get(grant_id)
        if grant is None or await self.connections.list_for_grant(grant_id):
            return
        if grant.refresh_token_encrypted and grant.status == ConnectionStatus.ACTIVE.value:
            # Xero's revocation removes every connection of the consent, whichever
            # organisation uses it: check every tenant the consent covered.
            covered = await self.consent_tenants.list_for_grant(grant_id) | set(tenant_ids)
            shared = await self.connections.tenants_held_elsewhere(
                grant.organization_id, grant.provider, covered
            )
            if shared:
                logger.warning(
                    "not revoking a token set whose consent another organisation relies on",
                    extra={"grant_id": str(grant_id), "tenants": len(shared)},
                )
            else:
                queued = await self.revocations.queue(
                    refresh_token_encrypted=grant.refresh_token_encrypted,
                    organization_id=grant.organization_id,
                    reason=reason,
                )
                self.queued.append(queued)
        await self.grants.delete_if_unused(grant_id)

    async def send_queued(self) -> None:
        """Send the revocations queued here (the caller's transaction has committed)."""
        await send_revocations(
            self.session_factory, self.settings, self.cipher, self.identity, self.queued
        )


async def run_maintenance(
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    cipher: TokenCipher,
    identity: XeroIdentityClient,
) -> MaintenanceReport:
    """Purge expired OAuth states and connect sessions; retry the revocations that are due."""
    async with session_factory() as session:
        cutoff = utcnow() - timedelta(seconds=settings.oauth_state_retention_seconds)
        purged = await OAuthStateRepository(session).purge_expired(cutoff)
        await session.commit()
    revoked, still_pending = await send_revocations(session_factory, settings, cipher, identity)
    if purged or revoked or still_pending:
        logger.info(
            "maintenance",
            extra={"states_purged": purged, "revoked": revoked, "still_pending": still_pending},
        )
    return MaintenanceReport(states_purged=purged, revoked=revoked, still_pending=still_pending)


async def send_revocations(
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    cipher: TokenCipher,
    identity: XeroIdentityClient,
    ids: Collection[uuid.UUID] | None = None,
) -> tuple[int, int]:
    """Send the revocations that are due (only `ids`, when given): (revoked, still pending).

    Each is claimed and committed before Xero is called, so the HTTP call never holds a write
    transaction (SQLite's lock) and two processes do not send the same one."""
    revoked = still_pending = 0
    async with session_factory() as session:
        revocations = XeroRevocations(session, settings, cipher, identity)
        due = await revocations.repository.due(utcnow(), ids=ids)
        await session.commit()
        for pending in due:
            claimed_until = utcnow() + revocations.backoff(pending.attempts + 1)
            claimed = await revocations.repository.claim(pending, claimed_until)
            await session.commit()
            if not claimed:
                continue
            pending.next_attempt_at = claimed_until
            if await revocations.attempt(pending):
                revoked += 1
            else:
                still_pending += 1
            await session.commit()
    return revoked, still_pending


async def maintenance_forever(
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    cipher: TokenCipher,
    identity: XeroIdentityClient,
) -> None:
    """`run_maintenance` at start-up, then every `maintenance_interval_seconds` (the app's
    lifespan runs this until shutdown; a failing pass is logged and the loop carries on)."""
    while True:
        try:
            await run_maintenance(session_factory, settings, cipher, identity)
        except Exception:
            logger.exception("maintenance pass failed")
        await asyncio.sleep(settings.maintenance_interval_seconds)
