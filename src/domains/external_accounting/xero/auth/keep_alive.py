"""Token keep-alive: Xero forgets a refresh token unused for 60 days, so a connection nobody
synced for two months would silently need a new consent. Each pass refreshes every token set
idle for more than TOKEN_KEEPALIVE_DAYS through `XeroAuthManager` (its refresh claims, rotation
and encryption), and a token set Xero refuses (`invalid_grant`) leaves its connections
`needs_reauth` now rather than months later. Run hourly by the job `tokens.keep_alive`, and by
`ledgersync tokens keep-alive`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from procrastinate import JobContext
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.database import utcnow
from src.core.jobs import job_tasks
from src.core.settings import Settings
from src.domains.external_accounting.base.factory import RESOURCES, ServiceResources
from src.domains.external_accounting.connections.repository import GrantRepository
from src.domains.external_accounting.exceptions import (
    ProviderRejected,
    ReauthorisationRequired,
    TokenRefreshFailed,
)
from src.domains.external_accounting.xero.auth.auth_manager import XeroAuthManager

logger = logging.getLogger(__name__)

# Token sets refreshed per pass at most (the rest wait for the next hourly pass).
BATCH = 1000


@dataclass
class KeepAliveReport:
    """What one pass did, by grant (token set) id."""

    idle: int = 0
    refreshed: list[str] = field(default_factory=list)
    needs_reauth: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


async def keep_alive_pass(
    session_factory: async_sessionmaker[AsyncSession],
    auth_manager: XeroAuthManager,
    settings: Settings,
    now: datetime | None = None,
) -> KeepAliveReport:
    """Refresh every token set not refreshed for TOKEN_KEEPALIVE_DAYS as of `now` (default:
    the current instant), one at a time. Idempotent: a token set another caller refreshed
    meanwhile is left as it is, and a refreshed one is no longer idle."""
    now = now or utcnow()
    before = now - timedelta(days=settings.token_keepalive_days)
    async with session_factory() as session:
        idle = await GrantRepository(session).idle(before, BATCH)
    report = KeepAliveReport(idle=len(idle))
    for grant, connection in idle:
        grant_id = str(grant.id)
        # The access token as selected: refreshed unless someone replaced it meanwhile.
        encrypted = grant.access_token_encrypted
        seen = auth_manager.cipher.decrypt(encrypted) if encrypted else ""
        try:
            await auth_manager.refresh_after_unauthorized(connection, seen)
        except ReauthorisationRequired:
            report.needs_reauth.append(grant_id)
            logger.warning(
                "token keep-alive: Xero refused the token set; its connections need "
                "reauthorisation",
                extra={"grant_id": grant_id, "organization_id": str(grant.organization_id)},
            )
            continue
        except TokenRefreshFailed as error:
            report.failed.append(grant_id)
            logger.warning(
                "token keep-alive: refresh failed; the next pass tries again",
                extra={"grant_id": grant_id, "problem": error.detail},
            )
            continue
        except ProviderRejected as error:
            # Our client credentials, not this token set: every other refresh would fail too.
            report.failed.append(grant_id)
            logger.error("token keep-alive stopped", extra={"problem": error.detail})
            break
        report.refreshed.append(grant_id)
        logger.info("token keep-alive: token set refreshed", extra={"grant_id": grant_id})
    return report


@job_tasks.task("tokens.keep_alive", queue="maintenance", cron="7 * * * *", pass_context=True)
async def keep_alive_task(context: JobContext, timestamp: int) -> None:
    """Hourly: one keep-alive pass with the worker's shared session factory, auth manager and
    settings (the `ServiceResources` in `context.additional_context`)."""
    resources: ServiceResources = context.additional_context[RESOURCES]
    report = await keep_alive_pass(
        resources.session_factory, resources.xero_auth_manager, resources.settings
    )
    logger.info(
        "token keep-alive pass",
        extra={
            "idle": report.idle,
            "refreshed": len(report.refreshed),
            "needs_reauth": len(report.needs_reauth),
            "failed": len(report.failed),
        },
    )
