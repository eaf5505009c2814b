"""Xero's ground truth (the sandbox's own record of every invoice) and the assertions that the
local tables equal it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.domains.external_accounting.base.sync import months_ago
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.ledger.models import Account, Invoice, InvoiceLineItem
from src.xero_sandbox.server import RunningSandbox
from src.xero_sandbox.xero_dates import parse_xero_date
from tests.fixtures import invoices_url


def ground_truth(sandbox: RunningSandbox, tenant_id: str) -> list[dict[str, Any]]:
    """Every invoice of a tenant as the sandbox holds it."""
    invoices: list[dict[str, Any]] = []
    offset = 0
    while True:
        response = httpx.get(
            invoices_url(sandbox, tenant_id), params={"offset": offset, "limit": 5000}
        )
        # Numbers as Decimal: a float would round the very figures the comparison checks.
        page = json.loads(response.text, parse_float=Decimal)
        invoices += page["Invoices"]
        offset += 5000
        if offset >= page["total"]:
            return invoices


def window_start(months_back: int) -> date:
    return months_ago(datetime.now(UTC).date(), months_back)


def in_scope(invoice: dict[str, Any], months_back: int = 12) -> bool:
    """What a full sync covers: dated inside the window, or still AUTHORISED."""
    day = parse_xero_date(invoice["Date"]).date()
    return day >= window_start(months_back) or invoice["Status"] == "AUTHORISED"


def _money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _day(value: Any) -> date | None:
    return parse_xero_date(value).date() if value else None


async def stored_invoice_ids(
    session_factory: async_sessionmaker[AsyncSession], connection_id: uuid.UUID
) -> set[str]:
    """The Xero ids of the connection's stored invoices."""
    async with session_factory() as session:
        rows = await session.execute(
            select(Invoice.provider_id).where(Invoice.connection_id == connection_id)
        )
        return set(rows.scalars())


async def local_accounts(
    session_factory: async_sessionmaker[AsyncSession], connection: Connection
) -> list[Account]:
    async with session_factory() as session:
        return list(
            (
                await session.execute(select(Account).where(Account.connection_id == connection.id))
            ).scalars()
        )


async def assert_matches_truth(
    session_factory: async_sessionmaker[AsyncSession],
    connection: Connection,
    truth: list[dict[str, Any]],
    expected_ids: set[str],
) -> None:
    """Local rows of the connection are exactly `expected_ids`, each equal to Xero's invoice in
    every mapped field, line items included, money to the cent as Decimal."""
    by_id = {i["InvoiceID"]: i for i in truth}
    async with session_factory() as session:
        rows = list(
            (
                await session.execute(select(Invoice).where(Invoice.connection_id == connection.id))
            ).scalars()
        )
        lines: dict[uuid.UUID, list[InvoiceLineItem]] = {}
        for line in (
            await session.execute(select(InvoiceLineItem).order_by(InvoiceLineItem.position))
        ).scalars():
            lines.setdefault(line.invoice_id, []).append(line)
    assert {r.provider_id for r in rows} == expected_ids
    for row in rows:
        x = by_id[row.provider_id]
        assert (row.number, row.type, row.status, row.reference) == (
            x["InvoiceNumber"],
            x["Type"],
            x["Status"],
            x["Reference"],
        )
        assert (row.contact_id, row.contact_name) == (
            x["Contact"]["ContactID"],
            x["Contact"]["Name"],
        )
        assert (row.date, row.due_date, row.fully_paid_on) == (
            _day(x["Date"]),
            _day(x["DueDate"]),
            _day(x.get("FullyPaidOnDate")),
        )
        assert row.currency_code == x["CurrencyCode"]
        assert row.currency_rate == _money(x["CurrencyRate"])
        for column, field in (
            ("sub_total", "SubTotal"),
            ("total_tax", "TotalTax"),
            ("total", "Total"),
            ("amount_due", "AmountDue"),
            ("amount_paid", "AmountPaid"),
            ("amount_credited", "AmountCredited"),
            ("total_discount", "TotalDiscount"),
        ):
            value = getattr(row, column)
            assert value == _money(x.get(field)), (column, value, x.get(field))
            assert value is None or isinstance(value, Decimal)
        assert row.provider_updated_at == parse_xero_date(x["UpdatedDateUTC"])
        assert row.raw["InvoiceID"] == x["InvoiceID"]
        stored = lines.get(row.id, [])
        assert [
            (
                li.provider_id,
                li.description,
                li.quantity,
                li.unit_amount,
                li.account_code,
                li.tax_type,
                li.tax_amount,
                li.line_amount,
                li.tracking,
            )
            for li in stored
        ] == [
            (
                li["LineItemID"],
                li["Description"],
                _money(li["Quantity"]),
                _money(li["UnitAmount"]),
                li["AccountCode"],
                li["TaxType"],
                _money(li["TaxAmount"]),
                _money(li["LineAmount"]),
                li["Tracking"],
            )
            for li in x["LineItems"]
        ]


async def assert_complete(
    session_factory: async_sessionmaker[AsyncSession],
    sandbox: RunningSandbox,
    connection: Connection,
    months_back: int = 120,
) -> list[dict[str, Any]]:
    """The connection holds exactly the in-scope invoices of its tenant, each equal to Xero's;
    returns the tenant's ground truth."""
    truth = ground_truth(sandbox, connection.tenant_id)
    expected = {i["InvoiceID"] for i in truth if in_scope(i, months_back)}
    await assert_matches_truth(session_factory, connection, truth, expected)
    return truth
