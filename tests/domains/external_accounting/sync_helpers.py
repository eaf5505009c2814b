"""Shared steps of the sync tests: connect through OAuth, call the sync API, compare with the
sandbox's ground truth."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest.mock import patch

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.domains.external_accounting.base.sync import months_ago
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.ledger.models import Account, Invoice, InvoiceLineItem
from src.xero_sandbox.server import RunningSandbox
from src.xero_sandbox.xero_dates import parse_xero_date
from tests.domains.external_accounting.connect_helpers import connect
from tests.factories import bearer, create_org_with_user


async def connected_org(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> tuple[uuid.UUID, str, list[Connection]]:
    """An organisation with an admin, connected to every sandbox tenant through OAuth."""
    organization, _, key = await create_org_with_user(session_factory)
    await connect(client, key, organization.id)
    async with session_factory() as session:
        connections = list(
            (await session.execute(select(Connection).order_by(Connection.tenant_name))).scalars()
        )
    return organization.id, key, connections


async def connected_to_new_tenant(
    client: httpx.AsyncClient,
    sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    name: str,
    invoices: int,
) -> tuple[uuid.UUID, str, Connection]:
    """A new sandbox tenant of `invoices` invoices, connected (with the others) through OAuth."""
    created = httpx.post(
        f"{sandbox.base_url}/_sandbox/tenants", json={"name": name, "invoices": invoices}
    )
    tenant = created.json()["tenant_id"]
    org_id, key, connections = await connected_org(client, session_factory)
    return org_id, key, next(c for c in connections if c.tenant_id == tenant)


async def sync(
    client: httpx.AsyncClient, key: str, org_id: uuid.UUID, what: str = "invoices", **params: Any
) -> dict[str, Any]:
    """POST a sync and return its SyncResult (asserting HTTP 200)."""
    response = await client.post(
        f"/external-accounting/{what}/sync",
        params={"org_id": str(org_id), **params},
        headers=bearer(key),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ground_truth(sandbox: RunningSandbox, tenant_id: str) -> list[dict[str, Any]]:
    """Every invoice of a tenant as the sandbox holds it."""
    invoices: list[dict[str, Any]] = []
    offset = 0
    while True:
        response = httpx.get(
            f"{sandbox.base_url}/_sandbox/tenants/{tenant_id}/invoices",
            params={"offset": offset, "limit": 5000},
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


def limit_sandbox(sandbox: RunningSandbox, minute_limit: int, time_scale: float) -> None:
    """Enforce a tighter minute (and compress time) in the sandbox."""
    httpx.put(
        f"{sandbox.base_url}/_sandbox/limits",
        json={"minute_limit": minute_limit, "time_scale": time_scale},
    ).raise_for_status()


async def local_accounts(
    session_factory: async_sessionmaker[AsyncSession], connection: Connection
) -> list[Account]:
    async with session_factory() as session:
        return list(
            (
                await session.execute(select(Account).where(Account.connection_id == connection.id))
            ).scalars()
        )


def recent(delta_days: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=delta_days)).isoformat()


class SandboxClock:
    """The clock the sandbox stamps every edit's `UpdatedDateUTC` with, moved by the test: real
    time plus an offset, or frozen at one instant (the sandbox runs in this process)."""

    def __init__(self) -> None:
        self.offset_ms = 0
        self.frozen_ms: int | None = None

    def __call__(self) -> int:
        if self.frozen_ms is not None:
            return self.frozen_ms
        return time.time_ns() // 1_000_000 + self.offset_ms

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass at once (more than Xero's one-second resolution apart)."""
        if self.frozen_ms is not None:
            self.frozen_ms += int(seconds * 1000)
        else:
            self.offset_ms += int(seconds * 1000)

    def freeze(self, moment: datetime) -> None:
        """Stamp every edit from now on at `moment` (plus the sandbox's 1 ms per repeat)."""
        self.frozen_ms = int(moment.timestamp() * 1000)


@contextmanager
def sandbox_clock() -> Iterator[SandboxClock]:
    """The sandbox's clock under the test's control for the length of the block."""
    clock = SandboxClock()
    with patch("src.xero_sandbox.store.now_ms", clock):
        yield clock


def set_faults(sandbox: RunningSandbox, **faults: Any) -> None:
    """Replace the sandbox's fault settings."""
    httpx.put(f"{sandbox.base_url}/_sandbox/faults", json=faults).raise_for_status()


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll `condition` until it holds (a concurrent sync reaching a point)."""
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)
