"""The reconciliation sweep against the sandbox's blind spots (issue 13), over real HTTP on a real
database: a line re-coded at Xero without a new UpdatedDateUTC is invisible to incremental syncs
and corrected by the sweep at the calls predicted; the cap on calls holds and the next sweep goes
on where the last stopped; accounts deleted at Xero are kept, marked deleted, by a whole-chart
sync and by the sweep, and live again when they reappear."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.domains.external_accounting.base.sync import ConnectionSyncResult
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.ledger.models import (
    Account,
    Invoice,
    InvoiceLineItem,
    RunTrigger,
    SyncRun,
)
from src.xero_sandbox.server import RunningSandbox
from src.xero_sandbox.xero_dates import parse_xero_date
from tests.fixtures import (
    connected_org,
    connected_to_new_tenant,
    delete_account_at_xero,
    recode_line,
    sync,
)
from tests.ground_truth import assert_complete, ground_truth, in_scope, local_accounts

OPEN = {"DRAFT", "SUBMITTED", "AUTHORISED"}
WINDOW_DAYS = 90


async def sweep(
    app: FastAPI, connection: Connection, *, max_calls: int = 50, window_days: int = WINDOW_DAYS
) -> ConnectionSyncResult:
    """One invoice sweep of the connection, run here (the job runs the same `start_reconcile`)."""
    service = app.state.resources.factory.get_sync_service(connection)
    started = await service.start_reconcile(
        connection, window_days=window_days, max_calls=max_calls
    )
    result: ConnectionSyncResult = await started.run()
    assert result.success, result
    return result


async def run_row(
    session_factory: async_sessionmaker[AsyncSession], result: ConnectionSyncResult
) -> SyncRun:
    async with session_factory() as session:
        run = await session.get(SyncRun, result.sync_run_id)
        assert run is not None
        return run


def predicted_calls(truth: list[dict[str, Any]], window_days: int) -> int:
    """One call a 1,000 invoices of each pass (at least one each: an empty answer is a call)."""
    since = datetime.now(UTC).date() - timedelta(days=window_days)
    open_count = sum(1 for i in truth if i["Status"] in OPEN)
    recent = sum(
        1 for i in truth if i["Status"] not in OPEN and parse_xero_date(i["Date"]).date() >= since
    )
    return max(1, math.ceil(open_count / 1000)) + max(1, math.ceil(recent / 1000))


def other_code(invoice: dict[str, Any]) -> str:
    """An account code its first line does not have (revenue for sales, expense for bills)."""
    current = invoice["LineItems"][0]["AccountCode"]
    choices = ("200", "260") if invoice["Type"] == "ACCREC" else ("400", "429")
    return next(code for code in choices if code != current)


async def stored_line_code(
    session_factory: async_sessionmaker[AsyncSession], connection: Connection, invoice_id: str
) -> str | None:
    async with session_factory() as session:
        code = await session.execute(
            select(InvoiceLineItem.account_code)
            .join(Invoice, Invoice.id == InvoiceLineItem.invoice_id)
            .where(
                Invoice.connection_id == connection.id,
                Invoice.provider_id == invoice_id,
                InvoiceLineItem.position == 0,
            )
        )
        return code.scalar_one()


async def test_the_sweep_corrects_a_silent_recode_that_incremental_syncs_miss(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connections = await connected_org(client, session_factory)
    connection = connections[0]
    await sync(client, key, org_id, connection_id=str(connection.id))
    truth = ground_truth(fresh_sandbox, connection.tenant_id)
    in_window = datetime.now(UTC).date() - timedelta(days=WINDOW_DAYS)
    open_one = next(i for i in truth if i["Status"] == "AUTHORISED")
    # Stored (inside the sync's 12 months) but dated before the sweep's window: its miss.
    old_paid = next(
        i
        for i in truth
        if i["Status"] == "PAID" and in_scope(i) and parse_xero_date(i["Date"]).date() < in_window
    )
    for invoice in (open_one, old_paid):
        recoded = recode_line(
            fresh_sandbox, connection.tenant_id, invoice["InvoiceID"], 0, other_code(invoice)
        )
        assert recoded["UpdatedDateUTC"] == invoice["UpdatedDateUTC"]  # the blind spot

    incremental = await sync(client, key, org_id, connection_id=str(connection.id))
    assert (incremental["created"], incremental["updated"]) == (0, 0)
    with pytest.raises(AssertionError):
        await assert_complete(session_factory, fresh_sandbox, connection, months_back=12)

    truth = ground_truth(fresh_sandbox, connection.tenant_id)
    result = await sweep(app, connection)
    assert result.api_calls == predicted_calls(truth, WINDOW_DAYS)
    assert result.mode == "reconcile"
    run = await run_row(session_factory, result)
    assert (run.found, run.corrected, run.trigger) == (1, 1, RunTrigger.RECONCILE)
    assert run.checkpoint is None  # a whole cycle: the next sweep starts over
    assert await stored_line_code(session_factory, connection, open_one["InvoiceID"]) == (
        other_code(open_one)
    )
    # Beyond the window, a closed invoice's silent edit stays unseen (docs/reconciliation.md).
    assert await stored_line_code(session_factory, connection, old_paid["InvoiceID"]) != (
        other_code(old_paid)
    )
    recode_line(
        fresh_sandbox,
        connection.tenant_id,
        old_paid["InvoiceID"],
        0,
        old_paid["LineItems"][0]["AccountCode"],
    )
    await assert_complete(session_factory, fresh_sandbox, connection, months_back=12)

    # Nothing differs any more: the next sweep finds nothing and writes nothing.
    again = await sweep(app, connection)
    assert (again.updated, again.created) == (0, 0)
    assert (await run_row(session_factory, again)).found == 0
    # The sweep never moved the incremental cursor nor stands in for a sync.
    after = await sync(client, key, org_id, connection_id=str(connection.id))
    assert after["connections"][0]["mode"] == "incremental"


async def test_the_call_cap_holds_and_the_next_sweep_goes_on_where_it_stopped(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    # About 1,250 open invoices: the open pass is two pages, then one of recent closed ones.
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Sweep Ltd", 5000
    )
    await sync(client, key, org_id, connection_id=str(connection.id))
    truth = ground_truth(fresh_sandbox, connection.tenant_id)
    window = datetime.now(UTC).date() - timedelta(days=WINDOW_DAYS)
    open_ones = sorted(
        (i for i in truth if i["Status"] in OPEN),
        key=lambda i: parse_xero_date(i["UpdatedDateUTC"]),
    )
    assert len(open_ones) > 1000
    recent_paid = next(
        i for i in truth if i["Status"] == "PAID" and parse_xero_date(i["Date"]).date() >= window
    )
    # The oldest change is on the first page, the newest on the last; a recent paid one in
    # the second pass.
    edited = [open_ones[0], open_ones[-1], recent_paid]
    for invoice in edited:
        recode_line(
            fresh_sandbox, connection.tenant_id, invoice["InvoiceID"], 0, other_code(invoice)
        )

    predicted = predicted_calls(truth, WINDOW_DAYS)
    assert predicted == 3
    found: list[int] = []
    for _ in range(predicted):
        result = await sweep(app, connection, max_calls=1)
        assert result.api_calls == 1  # the cap holds
        run = await run_row(session_factory, result)
        found.append(run.found)
        if run.checkpoint is None:
            break
        assert run.checkpoint["scope"] == "reconcile"
        assert run.params["max_calls"] == 1
    # Each sweep went on from where the last stopped: one silent edit per page, every page once.
    assert found == [1, 1, 1]
    assert run.checkpoint is None
    for invoice in edited:
        assert await stored_line_code(session_factory, connection, invoice["InvoiceID"]) == (
            other_code(invoice)
        )
    await assert_complete(session_factory, fresh_sandbox, connection, months_back=12)
    # A cycle done, the next sweep starts over from the first pass.
    restart = await sweep(app, connection, max_calls=1)
    assert (await run_row(session_factory, restart)).params["continued_from"] is None


async def stored_account(
    session_factory: async_sessionmaker[AsyncSession], connection: Connection, account_id: str
) -> Account:
    async with session_factory() as session:
        account = await session.execute(
            select(Account).where(
                Account.connection_id == connection.id, Account.provider_id == account_id
            )
        )
        return account.scalar_one()


async def test_an_account_deleted_at_xero_is_kept_marked_deleted_and_lives_again(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connections = await connected_org(client, session_factory)
    connection = connections[0]
    await sync(client, key, org_id, "accounts", connection_id=str(connection.id))
    savings = next(a for a in await local_accounts(session_factory, connection) if a.code == "091")
    chart = fresh_sandbox.runtime.store.tenants[connection.tenant_id].accounts
    as_xero_had_it = dict(next(a for a in chart if a["AccountID"] == savings.provider_id))
    response = delete_account_at_xero(fresh_sandbox, connection.tenant_id, savings.provider_id)
    assert response.status_code == 200, response.text

    # A sync of some types only cannot tell a deletion from a filter.
    partial = await sync(
        client, key, org_id, "accounts", connection_id=str(connection.id), account_types="BANK"
    )
    assert partial["success"]
    assert partial["api_calls"] == 1
    assert (
        await stored_account(session_factory, connection, savings.provider_id)
    ).deleted_at is None

    whole = await sync(client, key, org_id, "accounts", connection_id=str(connection.id))
    assert whole["api_calls"] == 1  # no extra call
    assert whole["updated"] == 1
    tombstone = await stored_account(session_factory, connection, savings.provider_id)
    assert tombstone.status == "DELETED"
    assert tombstone.deleted_at is not None
    assert (tombstone.code, tombstone.name, tombstone.bank_account_number) == (
        savings.code,
        savings.name,
        savings.bank_account_number,
    )
    assert tombstone.raw["AccountID"] == savings.provider_id
    async with session_factory() as session:
        run = await session.get(SyncRun, uuid.UUID(whole["sync_run_id"]))
        assert run is not None
        assert (run.found, run.corrected) == (1, 1)
    listed = await client.get(
        "/external-accounting/accounts",
        params={"org_id": str(org_id), "connection_id": str(connection.id)},
        headers={"Authorization": f"Bearer {key}"},
    )
    shown = next(a for a in listed.json() if a["provider_id"] == savings.provider_id)
    assert shown["status"] == "DELETED"
    assert shown["deleted_at"] is not None

    # Marked once: the next sync changes nothing.
    again = await sync(client, key, org_id, "accounts", connection_id=str(connection.id))
    assert again["updated"] == 0

    # Listed by Xero again (put back in the sandbox's chart as it was): live again.
    chart.append(as_xero_had_it)
    back = await sync(client, key, org_id, "accounts", connection_id=str(connection.id))
    assert back["updated"] == 1
    revived = await stored_account(session_factory, connection, savings.provider_id)
    assert (revived.status, revived.deleted_at) == ("ACTIVE", None)
