"""The console's rules: signing in with an API key (a server-side session, a CSRF token per
session), and the views its pages show, assembled from the services the API uses (never the API
itself, never SQL of its own beyond its repository)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from src.core.database import utcnow
from src.core.settings import Settings
from src.domains.console.exceptions import CsrfRefused, SignInRequired
from src.domains.console.messages import PlainError, plain_error
from src.domains.console.models import ConsoleSession
from src.domains.console.repository import (
    ConsoleReportRepository,
    ConsoleSessionRepository,
    Contact,
    StatusCount,
)
from src.domains.external_accounting.base.factory import IntegrationFactory
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.connections.schemas import ConnectionUsageOut
from src.domains.external_accounting.connections.service import ConnectionService
from src.domains.external_accounting.ledger.models import (
    UNFINISHED_STATUSES,
    RunStatus,
    SyncRun,
)
from src.domains.external_accounting.ledger.repository import LedgerRepository
from src.domains.external_accounting.ledger.service import LedgerService
from src.domains.external_accounting.schedules.schemas import ScheduleOut
from src.domains.external_accounting.schedules.service import ScheduleService
from src.domains.organizations.exceptions import InvalidApiKey, NotAMember, OrganizationNotFound
from src.domains.organizations.models import Role
from src.domains.organizations.service import OrgAccess, OrganizationService


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def csrf_token_of(session_token: str) -> str:
    """The session's CSRF token, derived from its cookie's token: the page's forms carry it,
    and only its hash is stored."""
    return hmac.new(session_token.encode(), b"ledgersync-console-csrf", hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class SignedIn:
    """A new console session: `token` goes in the cookie, and is never stored."""

    token: str
    expires_at: datetime


@dataclass(frozen=True)
class ConsoleSignIn:
    """A request's signed-in browser: who acts for which organisation, and the session's CSRF
    token for the page's forms."""

    access: OrgAccess
    session_id: uuid.UUID
    csrf_token: str
    csrf_token_hash: str

    @property
    def is_admin(self) -> bool:
        return self.access.at_least(Role.ADMIN)


class ConsoleSessionService:
    """Sign in, recognise a signed-in browser, check its forms' CSRF token, sign out."""

    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.sessions = ConsoleSessionRepository(session)
        self.organizations = OrganizationService(session)

    async def sign_in(self, api_key: str) -> SignedIn:
        """A session for the key's user in the key's organisation; InvalidApiKey (or
        NotAMember) when the key opens nothing."""
        caller = await self.organizations.authenticate(api_key.strip())
        await self.organizations.require_role(caller, caller.organization_id, Role.MEMBER)
        assert caller.api_key_id is not None  # authenticate always names the key
        now = utcnow()
        await self.sessions.delete_expired(now)
        token = secrets.token_urlsafe(32)
        expires_at = now + timedelta(seconds=self.settings.console_session_ttl_seconds)
        await self.sessions.add(
            ConsoleSession(
                token_hash=_sha256(token),
                api_key_id=caller.api_key_id,
                csrf_token_hash=_sha256(csrf_token_of(token)),
                expires_at=expires_at,
            )
        )
        return SignedIn(token=token, expires_at=expires_at)

    async def resume(self, token: str | None) -> ConsoleSignIn:
        """The signed-in browser behind the cookie's token; SignInRequired when there is none,
        it expired, or its key no longer opens the organisation (that ends its sessions)."""
        row = await self.sessions.by_token_hash(_sha256(token)) if token else None
        if row is None or token is None:
            raise SignInRequired("Sign in with your API key.")
        if row.expires_at <= utcnow():
            await self._end(row.id)
            raise SignInRequired("Your session expired: sign in again.")
        try:
            caller = await self.organizations.caller_of_key(row.api_key_id)
            access = await self.organizations.require_role(
                caller, caller.organization_id, Role.MEMBER
            )
        except (InvalidApiKey, NotAMember, OrganizationNotFound) as failure:
            await self.sessions.delete_for_key(row.api_key_id)
            await self.session.commit()  # the request fails: the sessions' end must not
            raise SignInRequired(f"{failure.detail} Sign in again.") from None
        return ConsoleSignIn(
            access=access,
            session_id=row.id,
            csrf_token=csrf_token_of(token),
            csrf_token_hash=row.csrf_token_hash,
        )

    @staticmethod
    def check_csrf(signed_in: ConsoleSignIn, submitted: str | None) -> None:
        """Refuse a form whose CSRF token is not this session's."""
        if not submitted or not hmac.compare_digest(_sha256(submitted), signed_in.csrf_token_hash):
            raise CsrfRefused("This form is out of date or did not come from the console.")

    async def sign_out(self, signed_in: ConsoleSignIn) -> None:
        """End the session: its cookie opens nothing any more."""
        await self.sessions.delete(signed_in.session_id)

    async def _end(self, session_id: uuid.UUID) -> None:
        await self.sessions.delete(session_id)
        await self.session.commit()


# -- what the pages show ----------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionView:
    """One connection as its card shows it."""

    connection: Connection
    schedule: ScheduleOut
    usage: ConnectionUsageOut
    calls_today: int
    day_limit: int
    day_reserve: int
    fresh_for: timedelta | None
    last_run: SyncRun | None
    last_error: PlainError | None


@dataclass(frozen=True)
class RunView:
    """A sync run with its connection's name, its progress and its error in plain words."""

    run: SyncRun
    tenant_name: str
    percent: int | None  # None: not known yet (no earlier run to measure it against)
    finished: bool
    error: PlainError | None


@dataclass(frozen=True)
class AgeBucket:
    """Money still owed, by how long past due."""

    label: str
    amount: Decimal
    invoices: int


AGE_BUCKETS = ((None, 0, "not yet due"), (1, 30, "1–30 days"), (31, 60, "31–60 days"))
AGE_BUCKETS_TAIL = ((61, 90, "61–90 days"), (91, None, "over 90 days"))


def age_label(days_overdue: int | None) -> str:
    """The bucket of an invoice `days_overdue` past its due date (None: no due date)."""
    if days_overdue is None or days_overdue <= 0:
        return "not yet due"
    for low, high, label in (*AGE_BUCKETS[1:], *AGE_BUCKETS_TAIL):
        if low is not None and days_overdue >= low and (high is None or days_overdue <= high):
            return label
    return "over 90 days"


class ConsoleViews:
    """Assembles each page's data from the API's own services."""

    def __init__(self, session: AsyncSession, settings: Settings, factory: IntegrationFactory):
        self.session = session
        self.settings = settings
        self.connections = ConnectionService(session, factory)
        self.schedules = ScheduleService(session, settings)
        self.ledger = LedgerService(session)
        self.ledger_repository = LedgerRepository(session)
        self.reports = ConsoleReportRepository(session)

    async def connection_views(self, access: OrgAccess, *, days: int = 14) -> list[ConnectionView]:
        """The organisation's connections with their schedule, usage and freshness."""
        now = utcnow()
        views = []
        for connection in await self.connections.list(access.organization_id):
            usage = await self.connections.usage(access.organization_id, connection.id, days=days)
            last_run = await self.ledger_repository.latest_run(connection.id, "invoices")
            views.append(
                ConnectionView(
                    connection=connection,
                    schedule=await self.schedules.get(connection),
                    usage=usage,
                    calls_today=usage.days[-1].calls,
                    day_limit=self.settings.xero_day_limit,
                    day_reserve=self.settings.xero_daily_reserve,
                    fresh_for=None
                    if connection.last_sync_at is None
                    else now - connection.last_sync_at,
                    last_run=last_run,
                    last_error=None
                    if last_run is None or last_run.status == RunStatus.SUCCESS
                    else plain_error(
                        last_run.error, last_run.error_detail, resumes_at=last_run.paused_until
                    ),
                )
            )
        return views

    async def connection(self, access: OrgAccess, connection_id: uuid.UUID) -> Connection:
        """One of the organisation's connections (another's is a 404)."""
        return await self.schedules.connection(access.organization_id, connection_id)

    async def runs(self, access: OrgAccess, limit: int = 50) -> list[RunView]:
        """Recent sync runs, newest first."""
        names = await self._tenant_names(access)
        return [
            await self._run_view(run, names)
            for run in await self.ledger.list_runs(access.organization_id, limit)
        ]

    async def run(self, access: OrgAccess, run_id: uuid.UUID) -> RunView:
        """One sync run, read afresh (its progress moves while a worker runs it)."""
        run = await self.ledger.get_run(access.organization_id, run_id)
        await self.session.refresh(run)
        return await self._run_view(run, await self._tenant_names(access))

    async def _tenant_names(self, access: OrgAccess) -> dict[uuid.UUID, str]:
        return {
            c.id: c.tenant_name or c.tenant_id
            for c in await self.connections.list(access.organization_id)
        }

    async def _run_view(self, run: SyncRun, names: dict[uuid.UUID, str]) -> RunView:
        finished = run.status not in UNFINISHED_STATUSES
        percent: int | None = None
        if run.status == RunStatus.SUCCESS:
            percent = 100
        elif not finished:
            # Xero does not say how many pages there are: the last run of the same connection
            # and object type is the best estimate of how far this one has come.
            previous = await self.ledger_repository.latest_run(run.connection_id, run.object_type)
            if previous is not None and previous.id != run.id and previous.count > 0:
                percent = min(99, round(100 * run.count / previous.count))
        return RunView(
            run=run,
            tenant_name=names.get(run.connection_id, "a disconnected organisation"),
            percent=percent,
            finished=finished,
            error=plain_error(run.error, run.error_detail, resumes_at=run.paused_until),
        )

    async def status_counts(self, access: OrgAccess) -> list[StatusCount]:
        return await self.reports.status_counts(access.organization_id)

    async def outstanding_by_age(self, access: OrgAccess) -> dict[str, list[AgeBucket]]:
        """Money still owed per currency (receivables and payables apart), bucketed by age."""
        today = utcnow().date()
        labels = [label for *_, label in (*AGE_BUCKETS, *AGE_BUCKETS_TAIL)]
        sums: dict[str, dict[str, list[Decimal | int]]] = defaultdict(
            lambda: {label: [Decimal(0), 0] for label in labels}
        )
        for row in await self.reports.outstanding(access.organization_id):
            if row.amount_due <= 0:
                continue
            overdue = None if row.due_date is None else (today - row.due_date).days
            kind = "owed to you" if row.type == "ACCREC" else "you owe"
            bucket = sums[f"{row.currency_code or '?'} {kind}"][age_label(overdue)]
            bucket[0] = Decimal(bucket[0]) + row.amount_due
            bucket[1] = int(bucket[1]) + 1
        return {
            key: [AgeBucket(label, Decimal(v[0]), int(v[1])) for label, v in buckets.items()]
            for key, buckets in sorted(sums.items())
        }

    async def contacts(self, access: OrgAccess) -> list[Contact]:
        return await self.reports.contacts(access.organization_id)
