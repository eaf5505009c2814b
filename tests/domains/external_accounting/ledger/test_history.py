"""An invoice's history: every version a sync wrote, recorded in the same transaction, with the
old and new value of what changed (exact decimals), through the API over the real sandbox."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.ledger.models import Invoice, LedgerChange
from src.xero_sandbox.server import RunningSandbox
from tests.factories import bearer, create_org_with_user
from tests.fixtures import connected_to_new_tenant, invoices_url, sync


async def _history(
    client: httpx.AsyncClient, key: str, org_id: uuid.UUID, invoice_id: uuid.UUID
) -> httpx.Response:
    return await client.get(
        f"/external-accounting/invoices/{invoice_id}/history",
        params={"org_id": str(org_id)},
        headers=bearer(key),
    )


async def _stored_id(
    session_factory: async_sessionmaker[AsyncSession], provider_id: str
) -> uuid.UUID:
    async with session_factory() as session:
        return (
            await session.execute(select(Invoice.id).where(Invoice.provider_id == provider_id))
        ).scalar_one()


async def _change_count(session_factory: async_sessionmaker[AsyncSession]) -> int:
    async with session_factory() as session:
        return (await session.execute(select(func.count()).select_from(LedgerChange))).scalar_one()


async def _sync_one(
    client: httpx.AsyncClient, key: str, org_id: uuid.UUID, connection: Connection
) -> dict[str, Any]:
    return await sync(client, key, org_id, connection_id=str(connection.id))


def _exact(response: httpx.Response) -> Any:
    """A sandbox answer with its numbers as Decimal (a float would round them)."""
    assert response.is_success, response.text
    return json.loads(response.text, parse_float=Decimal)


def _amounts(change: dict[str, Any], field: str) -> tuple[Decimal | None, Decimal | None]:
    old, new = change["changes"][field]["old"], change["changes"][field]["new"]
    return (None if old is None else Decimal(old)), (None if new is None else Decimal(new))


async def test_history_shows_each_version_of_an_invoice_paid_in_two_parts(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "History Ltd", 3
    )
    base = invoices_url(fresh_sandbox, connection.tenant_id)
    created = _exact(
        httpx.post(
            base,
            json={
                "status": "AUTHORISED",
                "line_items": [
                    {"quantity": "3", "unit_amount": "33.3333", "tax_amount": "15.00"},
                    {"quantity": "1", "unit_amount": "0.0001", "tax_amount": "0"},
                ],
            },
        )
    )
    invoice = created["InvoiceID"]
    total = created["Total"]
    await _sync_one(client, key, org_id, connection)
    assert httpx.post(f"{base}/{invoice}/pay", json={"amount": "40.01"}).is_success
    await _sync_one(client, key, org_id, connection)
    rest = total - Decimal("40.01")
    assert httpx.post(f"{base}/{invoice}/pay", json={"amount": str(rest)}).is_success
    await _sync_one(client, key, org_id, connection)

    response = await _history(client, key, org_id, await _stored_id(session_factory, invoice))
    assert response.status_code == 200, response.text
    body = response.json()
    versions = body["versions"]
    assert [(v["version"], v["kind"]) for v in versions] == [
        (1, "created"),
        (2, "updated"),
        (3, "updated"),
    ]
    assert body["version"] == 3
    first, part, full = versions
    # Version 1 carries the new values, lines included, exact.
    assert _amounts(first, "total") == (None, total)
    assert _amounts(first, "amount_due") == (None, total)
    assert first["changes"]["status"] == {"old": None, "new": "AUTHORISED"}
    assert [Decimal(line["unit_amount"]) for line in first["changes"]["lines"]["new"]] == [
        Decimal("33.3333"),
        Decimal("0.0001"),
    ]
    # The first payment: paid and due move by exactly 40.01, nothing else but the timestamp.
    assert _amounts(part, "amount_paid") == (Decimal(0), Decimal("40.01"))
    assert _amounts(part, "amount_due") == (total, rest)
    assert set(part["changes"]) == {"amount_paid", "amount_due", "provider_updated_at"}
    # The second: paid in full, the status changes.
    assert _amounts(full, "amount_paid") == (Decimal("40.01"), total)
    assert _amounts(full, "amount_due") == (rest, Decimal(0))
    assert full["changes"]["status"] == {"old": "AUTHORISED", "new": "PAID"}
    assert full["changes"]["fully_paid_on"]["old"] is None
    # Each version names the run that wrote it, and when.
    runs = [v["run_id"] for v in versions]
    assert len(set(runs)) == 3
    assert None not in runs
    assert [v["seen_at"] for v in versions] == sorted(v["seen_at"] for v in versions)


async def test_an_unchanged_resync_records_nothing(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Quiet Ltd", 40
    )
    await _sync_one(client, key, org_id, connection)
    after_first = await _change_count(session_factory)
    async with session_factory() as session:
        stored = (await session.execute(select(func.count()).select_from(Invoice))).scalar_one()
    assert after_first == stored > 0  # one `created` per invoice
    await _sync_one(client, key, org_id, connection)  # incremental: re-reads its last second
    await sync(client, key, org_id, connection_id=str(connection.id), incremental="false")
    assert await _change_count(session_factory) == after_first


async def test_a_line_edit_shows_the_old_and_new_lines(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Lines Ltd", 1
    )
    base = invoices_url(fresh_sandbox, connection.tenant_id)
    created = _exact(
        httpx.post(
            base,
            json={"status": "DRAFT", "line_items": [{"quantity": "2", "unit_amount": "10.50"}]},
        )
    )
    invoice = created["InvoiceID"]
    await _sync_one(client, key, org_id, connection)
    edited = _exact(httpx.post(f"{base}/{invoice}/edit", json={"add_line": True}))
    await _sync_one(client, key, org_id, connection)

    response = await _history(client, key, org_id, await _stored_id(session_factory, invoice))
    latest = response.json()["versions"][-1]
    assert (latest["version"], latest["kind"]) == (2, "updated")
    lines = latest["changes"]["lines"]
    assert len(lines["old"]) == 1
    assert len(lines["new"]) == 2
    assert Decimal(lines["old"][0]["unit_amount"]) == Decimal("10.50")
    assert lines["new"][0] == {**lines["old"][0], **lines["new"][0]}
    added = edited["LineItems"][1]
    assert Decimal(lines["new"][1]["line_amount"]) == added["LineAmount"]
    assert lines["new"][1]["description"] == added["Description"]
    assert _amounts(latest, "sub_total") == (created["SubTotal"], edited["SubTotal"])


async def test_another_organisations_invoice_is_not_found(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Private Ltd", 2
    )
    await _sync_one(client, key, org_id, connection)
    async with session_factory() as session:
        theirs = (await session.execute(select(Invoice.id).limit(1))).scalar_one()
    assert (await _history(client, key, org_id, theirs)).status_code == 200
    other, _, other_key = await create_org_with_user(session_factory, name="Other")
    response = await _history(client, other_key, other.id, theirs)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    # Nor does a member learn anything through the feed of their own organisation.
    feed = await client.get(
        "/external-accounting/changes",
        params={"org_id": str(other.id)},
        headers=bearer(other_key),
    )
    assert feed.status_code == 200
    assert feed.json()["changes"] == []
