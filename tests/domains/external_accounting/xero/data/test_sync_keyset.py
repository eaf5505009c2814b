"""What the incremental cursor and the keyset must never lose: a full sync does not move the cursor
past changes it did not fetch, and more than a page of changes in one second stays a keyset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.settings import Settings
from src.domains.external_accounting.ledger.models import Invoice
from src.domains.external_accounting.xero.data.accounting_client import XeroAccountingClient
from src.xero_sandbox.server import RunningSandbox
from src.xero_sandbox.xero_dates import parse_xero_date
from tests.fixtures import connected_org, connected_to_new_tenant, invoices_url, sandbox_clock, sync
from tests.ground_truth import assert_matches_truth, ground_truth, in_scope


async def test_a_full_sync_never_hides_a_change_to_an_old_invoice(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """The issue's reproduction: pay an invoice dated before the window (stored while it was
    AUTHORISED), create a new invoice a few seconds later, full sync, incremental sync."""
    org_id, key, connections = await connected_org(client, session_factory)
    connection = connections[0]
    tenant = connection.tenant_id
    base = invoices_url(fresh_sandbox, tenant)
    with sandbox_clock() as clock:
        await sync(client, key, org_id, connection_id=str(connection.id))
        old = next(
            i
            for i in ground_truth(fresh_sandbox, tenant)
            if i["Status"] == "AUTHORISED" and not in_scope({**i, "Status": "PAID"})
        )
        clock.advance(5)
        assert httpx.post(f"{base}/{old['InvoiceID']}/pay").status_code == 200
        clock.advance(5)
        created = httpx.post(
            base,
            json={"type": "ACCREC", "status": "AUTHORISED", "date": str(datetime.now(UTC).date())},
        ).json()
        full = await sync(
            client, key, org_id, connection_id=str(connection.id), incremental="false"
        )
        assert full["connections"][0]["mode"] == "full"
        incremental = await sync(client, key, org_id, connection_id=str(connection.id))
        assert incremental["connections"][0]["mode"] == "incremental"
    async with session_factory() as session:
        status = (
            await session.execute(
                select(Invoice.status).where(Invoice.provider_id == old["InvoiceID"])
            )
        ).scalar_one()
    assert status == "PAID"
    truth = ground_truth(fresh_sandbox, tenant)
    expected = {i["InvoiceID"] for i in truth if in_scope(i)} | {
        old["InvoiceID"],
        created["InvoiceID"],
    }
    await assert_matches_truth(session_factory, connection, truth, expected)


async def test_an_edit_mid_sync_within_a_busy_second_skips_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """120 invoices changed in one second, pages of 50: an invoice of the first page edited
    while the later ones are fetched must not shift another out of sight (page numbers do)."""
    _, _, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Busy Second Ltd", 200
    )
    tenant = connection.tenant_id
    base = invoices_url(fresh_sandbox, tenant)
    # A second after every generated change, so only the touched invoices are in it.
    busy = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    xero = XeroAccountingClient(app.state.http_client, app.state.xero_auth_manager, settings)
    seen: dict[str, datetime] = {}
    with sandbox_clock() as clock:
        clock.freeze(busy)
        touched = httpx.post(f"{base}/touch", json={"count": 120, "seed": 3}).json()
        assert touched == {"touched": 120}
        clock.freeze(busy + timedelta(seconds=30))
        edited: str | None = None
        pages = 0
        async for page in xero.iter_invoice_pages(
            connection, modified_since=busy - timedelta(seconds=1), page_size=50
        ):
            pages += 1
            for invoice in page.invoices:
                seen[invoice.invoice_id] = invoice.updated_date_utc
            if pages == 1:
                editable = [
                    i.invoice_id
                    for i in page.invoices
                    if i.status in ("DRAFT", "SUBMITTED", "AUTHORISED")
                ]
            if pages == 2:
                edited = editable[0]
                assert httpx.post(f"{base}/{edited}/edit", json={"reference": "moved"}).is_success
    truth = {
        i["InvoiceID"]: parse_xero_date(i["UpdatedDateUTC"])
        for i in ground_truth(fresh_sandbox, tenant)
    }
    changed = {k for k, v in truth.items() if v >= busy - timedelta(seconds=1)}
    assert len(changed) == 120
    assert edited is not None
    assert changed <= set(seen), f"skipped: {sorted(changed - set(seen))}"
    assert seen[edited] == truth[edited] >= busy + timedelta(seconds=30)
