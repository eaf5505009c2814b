"""The reconciliation sweep, provider-neutral: queueing sweeps (on demand, or when due) and
deciding which connections are due. What a sweep does is its provider's (`start_reconcile`);
docs/reconciliation.md says what it catches and what it costs.

A connection is due at the instants `start + offset + k * interval` (epoch seconds; nightly by
default), the offset a stable hash of the connection within the spread, so a fleet is not swept
all at once; it is due when its last sweep started before the latest such instant."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import procrastinate
from sqlalchemy.ext.asyncio import AsyncSession

from src.core.settings import Settings
from src.domains.external_accounting.base.factory import IntegrationFactory
from src.domains.external_accounting.base.sync import SyncTarget
from src.domains.external_accounting.connections.models import Provider
from src.domains.external_accounting.ledger.models import RunTrigger, SyncRun
from src.domains.external_accounting.reconciliation.repository import (
    ReconcileRepository,
    SweepState,
)
from src.domains.external_accounting.schedules.service import latest_slot, spread_offset
from src.domains.external_accounting.syncs.service import SyncsService


@dataclass(frozen=True)
class DueSweep:
    """A connection whose sweep is queued now."""

    connection_id: uuid.UUID
    organization_id: uuid.UUID
    provider: str
    slot_at: datetime


def sweep_slot(connection_id: uuid.UUID, now: datetime, settings: Settings) -> datetime:
    """The latest instant at or before `now` at which the connection is to be swept."""
    interval_s = settings.reconcile_every_minutes * 60
    spread_s = min(settings.reconcile_spread_minutes * 60, interval_s)
    offset_s = settings.reconcile_start_minute * 60 + spread_offset(
        connection_id, "reconcile", spread_s
    )
    return latest_slot(now, interval_s, offset_s % interval_s)


class ReconcileService:
    """Queues reconciliation sweeps."""

    def __init__(self, session: AsyncSession, factory: IntegrationFactory) -> None:
        self.session = session
        self.factory = factory
        self.settings = factory.settings

    async def queue(
        self,
        organization_id: uuid.UUID,
        job_app: procrastinate.App,
        *,
        connection_id: uuid.UUID | None = None,
    ) -> list[SyncRun]:
        """Queue a sweep of the organisation's connections (or the one named): an accounts run
        and an invoices run each, mode and trigger `reconcile`."""
        target = SyncTarget(
            organization_id=organization_id,
            provider=Provider.XERO,
            connection_id=connection_id,
            trigger=RunTrigger.RECONCILE,
        )
        return await SyncsService(self.session, self.factory).queue_reconcile(
            target,
            job_app,
            window_days=self.settings.reconcile_window_days,
            max_calls=self.settings.reconcile_max_calls,
        )


class SweepScheduler:
    """Which connections' sweeps are due."""

    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings

    async def due(self, now: datetime) -> list[DueSweep]:
        """Every active connection to sweep at `now`, the longest due first."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        states = await ReconcileRepository(self.session).sweep_states()
        due = [found for state in states if (found := self._due(state, now)) is not None]
        return sorted(due, key=lambda d: (d.slot_at, d.connection_id))

    def _due(self, state: SweepState, now: datetime) -> DueSweep | None:
        if not state.enabled:
            return None
        slot = sweep_slot(state.connection_id, now, self.settings)
        if (state.last_swept_at or state.connected_at) >= slot:
            return None  # swept since (or connected after) this slot
        return DueSweep(
            connection_id=state.connection_id,
            organization_id=state.organization_id,
            provider=state.provider,
            slot_at=slot,
        )
