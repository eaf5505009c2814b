"""Batched `invoices.changed` / `accounts.changed`: after a sync against the sandbox, the job
announces exactly the records it changed, with a change feed cursor from which `GET /changes`
continues exactly after the batch; a batch limit splits; endpoints get only what they
subscribed to; announcing twice (even at once) sends nothing twice; the first subscriber hears
of changes from then on; on PostgreSQL a change that commits later with a lower position is
announced, not skipped."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.database import utcnow
from src.core.settings import Settings
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.ledger.models import Account, Invoice, LedgerChange
from src.domains.external_accounting.ledger.repository import LedgerRepository
from src.domains.external_accounting.ledger.rows import ChangeRow
from src.domains.external_accounting.outbound.models import (
    ChangeAnnouncementCursor,
    WebhookDelivery,
)
from src.domains.external_accounting.outbound.service import ChangeAnnouncer
from src.xero_sandbox.server import RunningSandbox
from tests.domains.external_accounting.outbound.test_deliveries import (
    arrivals,
    delivery_log,
    outbound_settings,
    register,
    verified,
)
from tests.factories import bearer
from tests.fixtures import (
    ON_POSTGRES,
    background_service,
    connected_to_new_tenant,
    sync,
    wait_for,
)
from tests.xero_sandbox.webhook_receiver import WebhookReceiver

FEED = "/external-accounting/changes"


async def feed_after(
    client: httpx.AsyncClient, key: str, org_id: uuid.UUID, cursor: str | None, limit: int = 1000
) -> list[dict[str, Any]]:
    """The change feed's changes after `cursor` (from the start without one), one page."""
    params = {"org_id": str(org_id), "limit": str(limit)}
    if cursor is not None:
        params["cursor"] = cursor
    response = await client.get(FEED, params=params, headers=bearer(key))
    assert response.status_code == 200, response.text
    changes: list[dict[str, Any]] = response.json()["changes"]
    return changes


def touch(sandbox: RunningSandbox, tenant_id: str, count: int) -> None:
    """A Xero user edits `count` of the tenant's invoices."""
    response = httpx.post(
        f"{sandbox.base_url}/_sandbox/tenants/{tenant_id}/invoices/touch",
        json={"count": count, "seed": 5},
    )
    assert response.is_success, response.text


async def run_changes(
    session_factory: async_sessionmaker[AsyncSession], run_id: str
) -> list[tuple[str, str]]:
    """(record type, record id) of every change a run wrote, in feed order."""
    async with session_factory() as session:
        result = await session.execute(
            select(LedgerChange.record_type, LedgerChange.record_id)
            .where(LedgerChange.run_id == uuid.UUID(run_id))
            .order_by(LedgerChange.commit_xid, LedgerChange.id)
        )
        return [(record_type, str(record_id)) for record_type, record_id in result]


def only_run(result: dict[str, Any]) -> str:
    (connection,) = result["connections"]
    run_id: str = connection["sync_run_id"]
    return run_id


async def test_a_sync_announces_exactly_its_changes_with_a_cursor_that_continues_the_feed(
    fresh_sandbox: RunningSandbox,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    async with background_service(outbound_settings(settings)) as (_, client):
        org_id, key, connection = await connected_to_new_tenant(
            client, fresh_sandbox, session_factory, "Announce Ltd", 40
        )
        one = {"connection_id": str(connection.id)}
        with WebhookReceiver() as invoices_receiver, WebhookReceiver() as accounts_receiver:
            invoices_endpoint = await register(
                client, key, org_id, invoices_receiver.url, "invoices.changed"
            )
            accounts_endpoint = await register(
                client, key, org_id, accounts_receiver.url, "accounts.changed", "sync.failed"
            )
            full = await sync(client, key, org_id, incremental="false", months_back="120", **one)
            assert full["success"] is True, full
            (first,) = await arrivals(invoices_receiver, 1)

            touch(fresh_sandbox, connection.tenant_id, 6)
            incremental = await sync(client, key, org_id, **one)
            assert incremental["success"] is True, incremental
            first_again, second = await arrivals(invoices_receiver, 2)

            accounts = await sync(client, key, org_id, "accounts", **one)
            assert accounts["success"] is True, accounts
            (accounts_event,) = await arrivals(accounts_receiver, 1)
            invoices_log = await delivery_log(client, key, org_id, invoices_endpoint["id"])
            accounts_log = await delivery_log(client, key, org_id, accounts_endpoint["id"])

            # The full sync's event: every invoice it stored, once, and nothing else.
            created = verified(invoices_endpoint["secret"], first)
            assert first_again.headers["webhook-id"] == first.headers["webhook-id"]
            async with session_factory() as session:
                stored = set(
                    (
                        await session.execute(
                            select(Invoice.id).where(Invoice.connection_id == connection.id)
                        )
                    ).scalars()
                )
                account_ids = set(
                    (
                        await session.execute(
                            select(Account.id).where(Account.connection_id == connection.id)
                        )
                    ).scalars()
                )
            assert len(stored) == 40
            data = created["data"]
            assert created["type"] == "invoices.changed"
            assert data["connection_id"] == str(connection.id)
            assert data["tenant_id"] == connection.tenant_id
            assert data["object_type"] == "invoices"
            assert sorted(data["ids"]) == sorted(str(i) for i in stored)
            assert data["count"] == 40
            full_changes = await run_changes(session_factory, only_run(full))
            assert data["ids"] == [record for _, record in full_changes]

            # The incremental's event: exactly the invoices it changed; from the first event's
            # cursor the feed serves exactly these, and from its own cursor nothing.
            changed = verified(invoices_endpoint["secret"], second)["data"]
            incremental_changes = await run_changes(session_factory, only_run(incremental))
            assert 0 < len(incremental_changes) <= 6
            assert changed["ids"] == [record for _, record in incremental_changes]
            assert changed["count"] == len(incremental_changes)
            between = await feed_after(client, key, org_id, data["cursor"])
            invoice_changes = [c for c in between if c["record_type"] == "invoice"]
            assert [c["record_id"] for c in invoice_changes] == changed["ids"]
            after = await feed_after(client, key, org_id, changed["cursor"])
            assert [c["record_type"] for c in after] == ["account"] * len(after)

            # The accounts went only to the endpoint that asked for them.
            announced = verified(accounts_endpoint["secret"], accounts_event)
            assert announced["type"] == "accounts.changed"
            assert announced["data"]["object_type"] == "accounts"
            assert sorted(announced["data"]["ids"]) == sorted(str(i) for i in account_ids)
            assert await feed_after(client, key, org_id, announced["data"]["cursor"]) == []
            assert {d["event_type"] for d in invoices_log} == {"invoices.changed"}
            assert len(invoices_log) == 2
            assert [d["event_type"] for d in accounts_log] == ["accounts.changed"]
            assert all(
                verified(invoices_endpoint["secret"], r)["type"] == "invoices.changed"
                for r in invoices_receiver.received
            )
            assert len(accounts_receiver.received) == 1

    # The job ran every tick meanwhile: a pass now has nothing left to announce.
    assert await ChangeAnnouncer(session_factory, settings).announce() == []


async def test_a_batch_limit_splits_an_announcement_into_events_that_chain_the_feed(
    fresh_sandbox: RunningSandbox,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    limited = outbound_settings(settings).model_copy(update={"outbound_changes_batch_size": 7})
    async with background_service(limited) as (_, client):
        org_id, key, connection = await connected_to_new_tenant(
            client, fresh_sandbox, session_factory, "Batches Ltd", 30
        )
        with WebhookReceiver() as receiver:
            endpoint = await register(client, key, org_id, receiver.url, "invoices.changed")
            full = await sync(
                client,
                key,
                org_id,
                incremental="false",
                months_back="120",
                connection_id=str(connection.id),
            )
            assert full["success"] is True, full
            changes = [record for _, record in await run_changes(session_factory, only_run(full))]
            assert len(changes) == 30
            events: list[dict[str, Any]] = []

            async def all_announced() -> bool:
                received = {r.headers["webhook-id"]: r for r in receiver.received}
                events[:] = [verified(endpoint["secret"], r)["data"] for r in received.values()]
                return sum(int(e["count"]) for e in events) >= 30

            await wait_for(all_announced, timeout=30)

            # Receivers order events by their cursor: the feed position of the batch's end.
            cursors = [e["cursor"] for e in events]
            positions = {
                c["record_id"]: i for i, c in enumerate(await feed_after(client, key, org_id, None))
            }
            events.sort(key=lambda e: positions[e["ids"][-1]])
            assert len(events) >= 5
            assert all(0 < e["count"] == len(e["ids"]) <= 7 for e in events)
            assert [i for e in events for i in e["ids"]] == changes
            # Each event's cursor continues the feed exactly after it: from the previous
            # event's cursor the feed serves this event's ids, then nothing of these.
            previous = None
            for event in events:
                served = await feed_after(client, key, org_id, previous, limit=event["count"])
                assert [c["record_id"] for c in served] == event["ids"]
                previous = event["cursor"]
            assert await feed_after(client, key, org_id, previous) == []
            assert len(set(cursors)) == len(cursors)


async def test_announcing_twice_at_once_sends_nothing_twice_and_starts_at_subscription(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Twice Ltd", 12
    )
    one = {"connection_id": str(connection.id)}
    full = await sync(client, key, org_id, incremental="false", months_back="120", **one)
    assert full["success"] is True, full
    # Subscribing after the full sync: its 12 creations are history, not announced.
    endpoint = await register(
        client, key, org_id, "http://127.0.0.1:9/hooks", "invoices.changed", "accounts.changed"
    )
    announcer = ChangeAnnouncer(session_factory, settings)
    assert await announcer.announce() == []

    touch(fresh_sandbox, connection.tenant_id, 3)
    incremental = await sync(client, key, org_id, **one)
    expected = [record for _, record in await run_changes(session_factory, only_run(incremental))]
    assert 0 < len(expected) <= 3

    async def in_the_feed() -> bool:
        # On PostgreSQL, once no older transaction runs (the horizon passed them).
        served = [c["record_id"] for c in await feed_after(client, key, org_id, None)]
        return served[-len(expected) :] == expected

    await wait_for(in_the_feed, timeout=30)
    # Two passes at once (two workers, or a job run twice): one announces, the other nothing.
    if ON_POSTGRES:
        # Made to overlap for certain: both read the cursor, then wait for its row, held here.
        async with session_factory() as holder:
            await holder.execute(
                update(ChangeAnnouncementCursor)
                .where(ChangeAnnouncementCursor.connection_id == connection.id)
                .values(updated_at=utcnow())
            )
            passes = [
                asyncio.create_task(
                    announcer.announce_connection(connection.id, org_id, connection.tenant_id)
                )
                for _ in range(2)
            ]
            await asyncio.sleep(0.5)
            assert not any(p.done() for p in passes)
            await holder.rollback()
        assert sorted(len(r) for r in await asyncio.gather(*passes)) == [0, 1]
    else:
        # (The service's own in-process job may be a third; the outcome is the same.)
        await asyncio.gather(announcer.announce(), announcer.announce())
    assert await announcer.announce() == []
    async with session_factory() as session:
        deliveries = (
            (
                await session.execute(
                    select(WebhookDelivery).where(
                        WebhookDelivery.endpoint_id == uuid.UUID(endpoint["id"])
                    )
                )
            )
            .scalars()
            .all()
        )
    assert [d.event_type for d in deliveries] == ["invoices.changed"]
    assert deliveries[0].payload["data"]["ids"] == expected


def _change(connection: Connection, provider_id: str) -> ChangeRow:
    return ChangeRow(
        organization_id=connection.organization_id,
        connection_id=connection.id,
        record_type="invoice",
        record_id=uuid.uuid4(),
        provider_id=provider_id,
        kind="created",
        version=1,
        seen_at=utcnow(),
        run_id=None,
        changes="{}",
    )


@pytest.mark.skipif(not ON_POSTGRES, reason="SQLite has one writer: ids are commit order")
async def test_a_change_committed_later_with_a_lower_position_is_announced_not_skipped(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Horizon Events Ltd", 1
    )
    endpoint = await register(client, key, org_id, "http://127.0.0.1:9/hooks", "invoices.changed")
    announcer = ChangeAnnouncer(session_factory, settings)
    async with session_factory() as first, session_factory() as second:
        await first.begin()
        await LedgerRepository(first).add_changes([_change(connection, "taken-first")])
        await second.begin()
        await LedgerRepository(second).add_changes([_change(connection, "committed-first")])
        await second.commit()
        # The committed change lies past the open transaction's: announcing it now would put
        # the cursor past a change still to come.
        assert await announcer.announce() == []
        await first.commit()

    async def announced() -> bool:
        return bool(await announcer.announce())

    await wait_for(announced, timeout=30)
    async with session_factory() as session:
        (delivery,) = (
            (
                await session.execute(
                    select(WebhookDelivery).where(
                        WebhookDelivery.endpoint_id == uuid.UUID(endpoint["id"])
                    )
                )
            )
            .scalars()
            .all()
        )
        stored = dict(
            (
                await session.execute(
                    select(LedgerChange.provider_id, LedgerChange.record_id).where(
                        LedgerChange.connection_id == connection.id
                    )
                )
            ).all()
        )
    data = delivery.payload["data"]
    assert data["ids"] == [str(stored["taken-first"]), str(stored["committed-first"])]
    assert await feed_after(client, key, org_id, data["cursor"]) == []
