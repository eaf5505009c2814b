"""`XeroAuthManager`: valid access tokens for connections, refreshing exactly once however many
callers (tasks or processes) find the token expired at the same moment, and never losing the
token set to a refresh whose answer went missing."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core import metrics
from src.core.crypto import TokenCipher
from src.core.database import utcnow
from src.core.errors import LedgersyncError
from src.core.settings import Settings
from src.domains.external_accounting.connections.models import (
    Connection,
    ConnectionStatus,
    OAuthGrant,
)
from src.domains.external_accounting.connections.repository import (
    ConnectionRepository,
    GrantRepository,
)
from src.domains.external_accounting.exceptions import (
    ProviderRejected,
    ProviderUnavailable,
    ReauthorisationRequired,
    TokenRefreshFailed,
)
from src.domains.external_accounting.outbound.models import EventType
from src.domains.external_accounting.outbound.service import connection_event_data, emit
from src.domains.external_accounting.xero.auth.identity_client import (
    TokenEndpointError,
    TokenSet,
    XeroIdentityClient,
)

logger = logging.getLogger(__name__)


def connect_url(settings: Settings, organization_id: uuid.UUID) -> str:
    """Where a user goes to (re)connect Xero for an organisation."""
    return f"{settings.public_base_url}/external-accounting/xero/connect?org_id={organization_id}"


@dataclass(frozen=True)
class _Claim:
    """This caller's right to refresh one version of a token set, until `until`."""

    grant: OAuthGrant
    claim_id: uuid.UUID
    until: datetime


class XeroAuthManager:
    """Hands out access tokens; serialises refreshes per grant (token set).

    Refresh tokens are single use, so two refreshes of the same token set would strand the
    connection. Within a process an asyncio lock per grant queues callers; across processes a
    refresh is *claimed* on the grant row by a conditional UPDATE in a short transaction (no row
    or database lock is held across the call to Xero, which on SQLite would block every other
    writer), and whoever finds a live claim waits for the new token instead of refreshing.

    A refresh whose answer is lost (network error, 5xx, an answer without a refresh token, a
    failed commit of the new tokens) is retried here, the one place refreshes retry, with
    backoff: Xero accepts the spent refresh token again for 30 minutes and answers with the same
    new tokens, and the claim (well under those 30 minutes) bounds the retries. Only Xero's
    `invalid_grant` means the consent is gone (`needs_reauth`); anything else that still fails
    is a TokenRefreshFailed and the stored refresh token is kept for the next try. The new
    refresh token is committed before the new access token is handed out."""

    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        identity: XeroIdentityClient,
        cipher: TokenCipher,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.identity = identity
        self.cipher = cipher
        self.sleep = sleep
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}

    @property
    def claim_seconds(self) -> float:
        """How long a refresh claim holds: every attempt timing out, plus the backoff between
        them. With the defaults about four minutes, far inside Xero's 30-minute grace, so a
        process that died holding a claim leaves a refresh token the next claimer can still use."""
        s = self.settings
        attempt = (
            s.http_timeout_seconds + s.http_connect_timeout_seconds + s.xero_retry_max_delay_seconds
        )
        return s.xero_retry_attempts * attempt + 10.0

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
        async with lock:
            poll = 0.05
            give_up = time.monotonic() + self.claim_seconds + 5.0
            while True:
                outcome = await self._claim_or_current(connection, rejected_token)
                if isinstance(outcome, str):
                    return outcome
                if outcome is not None:
                    token = await self._refresh_claimed(connection, outcome)
                    if token is not None:
                        return token
                    continue  # our claim ran out and another process took over: see its result
                # Another process is refreshing this token set: wait for its new token.
                if time.monotonic() > give_up:
                    raise TokenRefreshFailed(
                        "Another process has been refreshing this Xero connection's tokens for "
                        "too long; try again in a minute.",
                        connection_id=str(connection.id),
                    )
                await self.sleep(poll)
                poll = min(poll * 2, 0.5)

    async def _claim_or_current(
        self, connection: Connection, rejected_token: str | None
    ) -> str | _Claim | None:
        """The access token someone else just refreshed, or our claim to refresh, or None when
        another process holds a live claim."""
        assert connection.grant_id is not None
        async with self.session_factory() as session:
            grants = GrantRepository(session)
            grant = await grants.read(connection.grant_id)
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
                return current  # someone else refreshed while we waited
            claim_id = uuid.uuid4()
            until = utcnow() + timedelta(seconds=self.claim_seconds)
            claimed = await grants.claim_refresh(
                grant.id, version=grant.token_version, claim_id=claim_id, until=until
            )
            await session.commit()
        return _Claim(grant, claim_id, until) if claimed else None

    async def _refresh_claimed(self, connection: Connection, claim: _Claim) -> str | None:
        """Refresh under our claim, retrying lost answers; the new access token, or None if the
        claim was lost (it expired and another process took over)."""
        grant = claim.grant
        tokens: TokenSet | None = None
        failures = 0
        settled = False  # stored, or the claim already released
        try:
            refresh_token = self.cipher.decrypt(grant.refresh_token_encrypted or "")
            while True:
                try:
                    if tokens is None:
                        tokens = await self.identity.refresh(refresh_token)
                    # Kept across a failed commit: storing them again needs no call to Xero.
                    stored = await self._store(claim, tokens)
                    settled = True
                    if not stored:
                        logger.warning(
                            "xero token refresh claim lost; re-reading the token set",
                            extra={"grant_id": str(grant.id)},
                        )
                        return None
                    metrics.TOKEN_REFRESHES.labels("refreshed").inc()
                    logger.info(
                        "xero token refreshed",
                        extra={"grant_id": str(grant.id), "token_version": grant.token_version + 1},
                    )
                    return tokens.access_token
                except TokenEndpointError as error:
                    if error.error == "invalid_grant":
                        await self._needs_reauth(connection, grant.id, error)
                        settled = True
                        metrics.TOKEN_REFRESHES.labels("needs_reauth").inc()
                        raise self._reauthorise(connection) from None
                    metrics.TOKEN_REFRESHES.labels("refused").inc()
                    raise ProviderRejected(
                        f"Xero's token endpoint refused the refresh ({error.error}); check "
                        "XERO_CLIENT_ID and XERO_CLIENT_SECRET."
                    ) from error
                except (ProviderUnavailable, SQLAlchemyError) as error:
                    failures += 1
                    if isinstance(error, ProviderUnavailable):
                        problem = error.detail.rstrip(".")
                    else:
                        problem = f"storing the new tokens failed ({type(error).__name__})"
                    delay = self._backoff(failures, error)
                    out_of_time = utcnow() + timedelta(
                        seconds=delay + self.settings.http_timeout_seconds
                    )
                    if failures >= self.settings.xero_retry_attempts or out_of_time >= claim.until:
                        metrics.TOKEN_REFRESHES.labels("failed").inc()
                        raise TokenRefreshFailed(
                            f"Refreshing the Xero connection's tokens failed: {problem} "
                            f"({failures} attempts). The connection stays active; try again "
                            "shortly.",
                            connection_id=str(connection.id),
                        ) from error
                    logger.warning(
                        "xero token refresh failed; retrying",
                        extra={
                            "grant_id": str(grant.id),
                            "problem": problem,
                            "attempt": failures,
                            "delay_s": round(delay, 2),
                        },
                    )
                    await self.sleep(delay)
        finally:
            if not settled:
                await self._release(claim)

    async def _store(self, claim: _Claim, tokens: TokenSet) -> bool:
        async with self.session_factory() as session:
            stored = await GrantRepository(session).store_refreshed(
                claim.grant.id,
                version=claim.grant.token_version,
                claim_id=claim.claim_id,
                access_token_encrypted=self.cipher.encrypt(tokens.access_token),
                refresh_token_encrypted=self.cipher.encrypt(tokens.refresh_token),
                expires_at=tokens.expires_at,
            )
            await session.commit()
        return stored

    async def _release(self, claim: _Claim) -> None:
        """Let the next caller refresh at once (best effort: the claim expires anyway)."""
        try:
            async with self.session_factory() as session:
                await GrantRepository(session).release_claim(claim.grant.id, claim.claim_id)
                await session.commit()
        except SQLAlchemyError:
            logger.warning(
                "could not release a token refresh claim; it expires by itself",
                extra={"grant_id": str(claim.grant.id)},
            )

    async def _needs_reauth(
        self, connection: Connection, grant_id: uuid.UUID, error: TokenEndpointError
    ) -> None:
        async with self.session_factory() as session:
            # The connections this refusal turns: told to the customer's endpoints in the same
            # transaction (one already waiting for consent is not news).
            turned = [
                c
                for c in await ConnectionRepository(session).list_for_grant(grant_id)
                if c.status == ConnectionStatus.ACTIVE.value
            ]
            await GrantRepository(session).mark_needs_reauth(grant_id)
            for stale in turned:
                await emit(
                    session,
                    stale.organization_id,
                    EventType.CONNECTION_NEEDS_REAUTH,
                    connection_event_data(stale, reason=error.error),
                )
            await session.commit()
        connection.status = ConnectionStatus.NEEDS_REAUTH.value
        logger.warning(
            "xero refused the refresh token; the connection needs reauthorisation",
            extra={"grant_id": str(grant_id), "oauth_error": error.error},
        )

    def jitter(self, delay: float) -> float:
        """Random spread added to a backoff delay (its own method so tests can pin it)."""
        return random.uniform(0, delay / 2)

    def _backoff(self, attempt: int, error: Exception) -> float:
        """Delay before retry `attempt` (1-based), at least what Xero's Retry-After asked."""
        s = self.settings
        delay: float = min(
            s.xero_retry_max_delay_seconds, s.xero_retry_base_delay_seconds * 2.0 ** (attempt - 1)
        )
        delay += self.jitter(delay)
        asked = (
            error.extra.get("retry_after_seconds") if isinstance(error, LedgersyncError) else None
        )
        return max(delay, float(asked)) if isinstance(asked, int | float) else delay
