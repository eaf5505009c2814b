"""All SQL of the console: its sign-ins, and the few summaries its charts draw (read from the
ledger's tables, which the console never writes)."""

from __future__ import annotations

import datetime as dt
import uuid
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from src.domains.console.models import ConsoleSession
from src.domains.external_accounting.ledger.models import Invoice

# Statuses whose amount due is still owed (DRAFT is not yet an invoice, PAID/VOIDED/DELETED owe
# nothing).
OUTSTANDING_STATUSES = ("SUBMITTED", "AUTHORISED")


class StatusCount(NamedTuple):
    """How many invoices of one type have one status."""

    type: str
    status: str
    invoices: int


class OutstandingInvoice(NamedTuple):
    """What an invoice still owes, and when it was due."""

    type: str
    currency_code: str | None
    due_date: dt.date | None
    amount_due: Decimal


class Contact(NamedTuple):
    """A contact the organisation's invoices name."""

    contact_id: str
    name: str


class ConsoleSessionRepository:
    """Console sign-ins."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: ConsoleSession) -> None:
        self.session.add(row)
        await self.session.flush()

    async def by_token_hash(self, token_hash: str) -> ConsoleSession | None:
        result = await self.session.execute(
            select(ConsoleSession).where(ConsoleSession.token_hash == token_hash)
        )
        return result.scalar_one_or_none()

    async def delete(self, session_id: uuid.UUID) -> None:
        await self.session.execute(delete(ConsoleSession).where(ConsoleSession.id == session_id))

    async def delete_for_key(self, api_key_id: uuid.UUID) -> None:
        """Every sign-in of a key (it was revoked or expired)."""
        await self.session.execute(
            delete(ConsoleSession).where(ConsoleSession.api_key_id == api_key_id)
        )

    async def delete_expired(self, now: datetime) -> None:
        await self.session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))


class ConsoleReportRepository:
    """The summaries the console's charts and filters need."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def status_counts(self, organization_id: uuid.UUID) -> list[StatusCount]:
        result = await self.session.execute(
            select(Invoice.type, Invoice.status, func.count())
            .where(Invoice.organization_id == organization_id)
            .group_by(Invoice.type, Invoice.status)
            .order_by(Invoice.type, Invoice.status)
        )
        return [StatusCount(*row) for row in result.all()]

    async def outstanding(self, organization_id: uuid.UUID) -> list[OutstandingInvoice]:
        """Invoices still owed: summed by the caller in Decimal (SQLite's SUM would not be
        exact over the text it keeps money in)."""
        result = await self.session.execute(
            select(Invoice.type, Invoice.currency_code, Invoice.due_date, Invoice.amount_due).where(
                Invoice.organization_id == organization_id,
                Invoice.status.in_(OUTSTANDING_STATUSES),
                Invoice.amount_due.is_not(None),
            )
        )
        return [
            OutstandingInvoice(kind, currency, due, amount)
            for kind, currency, due, amount in result.all()
            if amount is not None
        ]

    async def contacts(self, organization_id: uuid.UUID, limit: int = 500) -> list[Contact]:
        result = await self.session.execute(
            select(Invoice.contact_id, func.max(Invoice.contact_name))
            .where(Invoice.organization_id == organization_id, Invoice.contact_id.is_not(None))
            .group_by(Invoice.contact_id)
            .order_by(func.max(Invoice.contact_name))
            .limit(limit)
        )
        return [
            Contact(contact_id, name or contact_id)
            for contact_id, name in result.all()
            if contact_id is not None
        ]
