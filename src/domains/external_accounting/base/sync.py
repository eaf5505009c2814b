"""The provider seam for syncing: what every provider's sync service offers, and what it returns."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import ClassVar, Literal, Protocol

from pydantic import BaseModel, Field

from src.domains.external_accounting.connections.models import Connection, Provider
from src.domains.external_accounting.ledger.models import INVOICE_TYPES, RunTrigger

ObjectType = Literal["invoices", "accounts"]


def months_ago(today: date, months: int) -> date:
    """The same day `months` calendar months earlier (clamped to the month's last day): where a
    full sync's window of `months_back` starts."""
    year, month = divmod(today.year * 12 + today.month - 1 - months, 12)
    month += 1
    for day in (today.day, 30, 29, 28):
        try:
            return date(year, month, day)
        except ValueError:
            continue
    return date(year, month, 28)


@dataclass(frozen=True, kw_only=True)
class SyncTarget:
    """Which of an organisation's connections a sync covers: the one named (by id, or by its
    provider tenant), else every active one. `trigger` is recorded on the runs it queues."""

    organization_id: uuid.UUID
    provider: Provider
    connection_id: uuid.UUID | None = None
    tenant_id: str | None = None
    trigger: RunTrigger = RunTrigger.REQUEST


@dataclass(frozen=True, kw_only=True)
class InvoiceSyncRequest(SyncTarget):
    """Sync invoices: incrementally from the cursor, or in full over `months_back` months (a
    full sync that failed or paused earlier resumes from its checkpoint)."""

    object_type: ClassVar[ObjectType] = "invoices"
    incremental: bool = True
    invoice_types: Sequence[str] = INVOICE_TYPES
    months_back: int = 12


@dataclass(frozen=True, kw_only=True)
class AccountSyncRequest(SyncTarget):
    """Sync the chart of accounts, optionally only some account types (None: all)."""

    object_type: ClassVar[ObjectType] = "accounts"
    account_types: Sequence[str] | None = None


class ConnectionSyncResult(BaseModel):
    """The outcome of syncing one connection."""

    connection_id: uuid.UUID
    tenant_name: str
    sync_run_id: uuid.UUID | None
    success: bool
    mode: str
    count: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    api_calls: int = 0
    duration_seconds: float = 0.0
    last_modified: datetime | None = None
    error: str | None = None
    error_detail: str | None = None
    resume_after: datetime | None = None


class SyncResult(BaseModel):
    """The summary a sync endpoint returns (never the records themselves)."""

    object_type: ObjectType
    success: bool
    count: int
    duration_seconds: float
    last_modified: datetime | None
    sync_run_id: uuid.UUID | None = Field(description="The run, when one connection was synced")
    created: int
    updated: int
    unchanged: int
    api_calls: int
    error: str | None = None
    resume_after: datetime | None = None
    connections: list[ConnectionSyncResult]

    @classmethod
    def combine(
        cls, object_type: ObjectType, parts: Sequence[ConnectionSyncResult], duration: float
    ) -> SyncResult:
        """One summary over the connections synced."""
        failed = [p for p in parts if not p.success]
        stamps = [p.last_modified for p in parts if p.last_modified]
        resumes = [p.resume_after for p in parts if p.resume_after]
        return cls(
            object_type=object_type,
            success=not failed,
            count=sum(p.count for p in parts),
            duration_seconds=round(duration, 3),
            last_modified=max(stamps) if stamps else None,
            sync_run_id=parts[0].sync_run_id if len(parts) == 1 else None,
            created=sum(p.created for p in parts),
            updated=sum(p.updated for p in parts),
            unchanged=sum(p.unchanged for p in parts),
            api_calls=sum(p.api_calls for p in parts),
            error=failed[0].error if failed else None,
            resume_after=max(resumes) if resumes else None,
            connections=list(parts),
        )


@dataclass(frozen=True)
class RunClaim:
    """A queued run (a background sync) to run, and the job attempt that runs it: instead of
    recording a new run, the sync service takes the lease for this one."""

    run_id: uuid.UUID
    job_id: int
    job_attempt: int
    # How many more times the run is queued again when it fails on something temporary.
    retries_left: int = 0


async def _nothing_to_release() -> None:
    return None


@dataclass
class StartedSync:
    """A sync of one connection whose lease is taken (or that needs none: still paused). `run`
    does the work; `release` gives the lease back unused, leaving no run behind, so a request
    that could not take every lease it needs starts nothing."""

    run_id: uuid.UUID | None
    run: Callable[[], Awaitable[ConnectionSyncResult]]
    release: Callable[[], Awaitable[None]] = _nothing_to_release


class SyncService(Protocol):
    """What a provider's sync service does for one connection."""

    async def start_invoices(
        self,
        connection: Connection,
        *,
        incremental: bool,
        invoice_types: Sequence[str],
        months_back: int,
        claim: RunClaim | None = None,
    ) -> StartedSync:
        """Take the connection's invoice lease (`SyncInProgress` when held) without syncing:
        for a new run, or for the queued run `claim` names."""
        ...

    async def start_accounts(
        self,
        connection: Connection,
        *,
        account_types: Sequence[str] | None,
        claim: RunClaim | None = None,
    ) -> StartedSync:
        """Take the connection's accounts lease (`SyncInProgress` when held) without syncing:
        for a new run, or for the queued run `claim` names."""
        ...

    async def start_reconcile(
        self,
        connection: Connection,
        *,
        window_days: int,
        max_calls: int,
        claim: RunClaim | None = None,
    ) -> StartedSync:
        """Take the connection's invoice lease for a reconciliation sweep (`SyncInProgress`
        when held): re-read what timestamps cannot vouch for, at most `max_calls` calls."""
        ...

    async def sync_invoices(
        self,
        connection: Connection,
        *,
        incremental: bool,
        invoice_types: Sequence[str],
        months_back: int,
    ) -> ConnectionSyncResult:
        """Bring the connection's invoices up to date."""
        ...

    async def sync_accounts(
        self, connection: Connection, *, account_types: Sequence[str] | None
    ) -> ConnectionSyncResult:
        """Bring the connection's chart of accounts up to date."""
        ...
