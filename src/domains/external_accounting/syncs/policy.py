"""Who may start which sync, and how often. A full sync reads every invoice of the window and
can spend much of a tenant's daily Xero budget (shared with the customer's other apps), so it is
for admins; and an organisation may start only so many syncs per window, counted in the
database (`sync_runs`) so every process sees the same count."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Annotated

from fastapi import Query
from sqlalchemy.ext.asyncio import AsyncSession

from src.core.database import utcnow
from src.core.deps import SessionDep, SettingsDep
from src.core.settings import Settings
from src.domains.external_accounting.connections.repository import SyncRequestRepository
from src.domains.external_accounting.exceptions import FullSyncRequiresAdmin, SyncRateLimited
from src.domains.organizations.deps import MemberOfOrg
from src.domains.organizations.models import Role
from src.domains.organizations.service import OrgAccess

# The route declares the same parameter; one declaration keeps the document's description.
IncrementalQuery = Annotated[
    bool,
    Query(
        description="Only what changed since the last sync (false: a full sync)", examples=[True]
    ),
]


class SyncRequestPolicy:
    """The rules a sync request must pass before any run starts."""

    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings

    async def check(self, access: OrgAccess, *, full: bool) -> None:
        """Raise unless the member `access` names may start this sync for the organisation now."""
        if full and not access.at_least(Role.ADMIN):
            raise FullSyncRequiresAdmin(
                "A full sync (incremental=false) needs the admin role; members can run "
                "incremental syncs."
            )
        window = timedelta(seconds=self.settings.sync_rate_limit_window_seconds)
        now = utcnow()
        started, oldest = await SyncRequestRepository(self.session).started_since(
            access.organization_id, now - window
        )
        if started >= self.settings.sync_rate_limit_per_org:
            frees_at = (oldest or now) + window
            retry_after = max(1, math.ceil((frees_at - now).total_seconds()))
            raise SyncRateLimited(
                f"This organisation started {started} syncs in the last {window.seconds} "
                f"seconds, its limit; try again in {retry_after} seconds.",
                retry_after_seconds=retry_after,
            )


async def invoice_sync_allowed(
    access: MemberOfOrg,
    session: SessionDep,
    settings: SettingsDep,
    incremental: IncrementalQuery = True,
) -> None:
    """Dependency of the invoice sync route: admin for full syncs, and the rate limit."""
    await SyncRequestPolicy(session, settings).check(access, full=not incremental)


async def sync_allowed(access: MemberOfOrg, session: SessionDep, settings: SettingsDep) -> None:
    """Dependency of the other sync routes: the rate limit."""
    await SyncRequestPolicy(session, settings).check(access, full=False)
