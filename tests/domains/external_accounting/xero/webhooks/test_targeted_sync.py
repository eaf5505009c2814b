"""Webhook events drive targeted syncs (issue 13), end to end: a Xero user's edit in the sandbox
plus its signed event is in our database within seconds with no sync request; a burst of 500
events (100 invoices, duplicated and out of order) is one job costing a handful of calls and
converges to the ground truth; stale events cost nothing; a connection that needs a new consent
costs nothing either. Background jobs run in-process on SQLite, on a worker on PostgreSQL."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.settings import Settings
from src.domains.external_accounting.connections.models import Connection, ConnectionStatus
from src.domains.external_accounting.ledger.models import Invoice, RunTrigger, SyncRun
from src.domains.external_accounting.xero.webhooks.models import EventStatus, WebhookEvent
from src.xero_sandbox.server import RunningSandbox
from src.xero_sandbox.xero_dates import parse_xero_date
from tests.fixtures import WEBHOOK_KEY as KEY
from tests.fixtures import (
    background_service,
    connected_org,
    fast_jobs,
    reset_sandbox_stats,
    sandbox_stats,
    sync,
    wait_for,
)
from tests.fixtures import post_webhook as post_signed
from tests.fixtures import xero_delivery as delivery
from tests.fixtures import xero_event as event
from tests.ground_truth import assert_complete

FULL = {"incremental": "false", "months_back": "120"}


def webhook_settings(settings: Settings, **overrides: Any) -> Settings:
    timings = {"webhook_coalesce_seconds": 0.3, "webhook_busy_retry_seconds": 0.2}
    return fast_jobs(settings, xero_webhook_key=SecretStr(KEY), **{**timings, **overrides})


def xero_time(moment: datetime) -> str:
    """`eventDateUtc` as Xero writes it: UTC, milliseconds, no zone."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")


def edit_in_xero(
    sandbox: RunningSandbox, tenant_id: str, invoice_id: str, action: str, **body: Any
) -> datetime:
    """A Xero user's edit through the sandbox's control API; the invoice's new UpdatedDateUTC."""
    response = httpx.post(
        f"{sandbox.base_url}/_sandbox/tenants/{tenant_id}/invoices/{invoice_id}/{action}",
        json=body or None,
    )
    response.raise_for_status()
    return parse_xero_date(response.json()["UpdatedDateUTC"])


def create_in_xero(sandbox: RunningSandbox, tenant_id: str) -> tuple[str, datetime]:
    """A Xero user's new invoice; its id and UpdatedDateUTC."""
    response = httpx.post(
        f"{sandbox.base_url}/_sandbox/tenants/{tenant_id}/invoices", json={"status": "AUTHORISED"}
    )
    response.raise_for_status()
    created = response.json()
    return created["InvoiceID"], parse_xero_date(created["UpdatedDateUTC"])


async def invoice_ids(
    session_factory: async_sessionmaker[AsyncSession], connection: Connection, *statuses: str
) -> list[str]:
    async with session_factory() as session:
        rows = await session.execute(
            select(Invoice.provider_id)
            .where(Invoice.connection_id == connection.id, Invoice.status.in_(statuses))
            .order_by(Invoice.provider_id)
        )
        return list(rows.scalars())


async def events_of(session_factory: async_sessionmaker[AsyncSession]) -> list[WebhookEvent]:
    async with session_factory() as session:
        return list((await session.execute(select(WebhookEvent))).scalars())


async def none_pending(session_factory: async_sessionmaker[AsyncSession]) -> bool:
    events = await events_of(session_factory)
    return bool(events) and all(e.status != EventStatus.PENDING.value for e in events)


def tenant_calls(sandbox: RunningSandbox, tenant_id: str) -> int:
    return int(sandbox_stats(sandbox)["by_tenant"].get(tenant_id, 0))


async def test_an_edit_and_its_event_are_in_our_database_within_seconds_without_a_request(
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    fresh_sandbox: RunningSandbox,
) -> None:
    async with background_service(webhook_settings(settings)) as (_, client):
        org = await connected_org(client, session_factory)
        connection = org.connections[0]
        await sync(client, org.key, org.org_id, connection_id=str(connection.id), **FULL)
        invoice_id = (await invoice_ids(session_factory, connection, "AUTHORISED"))[0]
        reset_sandbox_stats(fresh_sandbox)

        updated = edit_in_xero(fresh_sandbox, connection.tenant_id, invoice_id, "pay")
        body = delivery(event(connection.tenant_id, invoice_id, at=xero_time(updated)))
        sent = asyncio.get_running_loop().time()
        response = await post_signed(client, body)
        assert (response.status_code, response.content) == (200, b"")

        async def paid() -> bool:
            async with session_factory() as session:
                status = await session.scalar(
                    select(Invoice.status).where(
                        Invoice.connection_id == connection.id, Invoice.provider_id == invoice_id
                    )
                )
            return status == "PAID"

        await wait_for(paid, timeout=10.0)
        elapsed = asyncio.get_running_loop().time() - sent
        await wait_for(lambda: none_pending(session_factory))
        async with session_factory() as session:
            runs = list(
                (await session.execute(select(SyncRun).order_by(SyncRun.started_at))).scalars()
            )
        targeted = runs[-1]
        assert (targeted.trigger, targeted.mode, targeted.status) == (
            RunTrigger.WEBHOOK.value,
            "targeted",
            "success",
        )
        assert targeted.api_calls == 1  # one `IDs=` call
        assert tenant_calls(fresh_sandbox, connection.tenant_id) == 1
        [stored] = await events_of(session_factory)
        assert (stored.status, stored.sync_run_id) == (EventStatus.SYNCED.value, targeted.id)
        assert elapsed < 5.0
        await assert_complete(session_factory, fresh_sandbox, connection)


async def test_a_burst_of_500_events_is_one_job_of_a_handful_of_calls_and_converges(
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    fresh_sandbox: RunningSandbox,
) -> None:
    """100 invoices edited, each announced five times: twice at its real time (a duplicate),
    three times at older times (deliveries out of order); in five deliveries, shuffled."""
    async with background_service(webhook_settings(settings, webhook_coalesce_seconds=1.0)) as (
        _,
        client,
    ):
        org = await connected_org(client, session_factory)
        connection = org.connections[0]
        tenant = connection.tenant_id
        await sync(client, org.key, org.org_id, connection_id=str(connection.id), **FULL)
        editable = await invoice_ids(
            session_factory, connection, "DRAFT", "SUBMITTED", "AUTHORISED"
        )
        changes = [
            (i, edit_in_xero(fresh_sandbox, tenant, i, "edit", reference=f"burst {n}"))
            for n, i in enumerate(editable[:50])
        ]
        while len(changes) < 100:  # and new invoices (CREATE events) for the rest
            changes.append(create_in_xero(fresh_sandbox, tenant))
        events = []
        for invoice_id, updated in changes:
            events += [event(tenant, invoice_id, at=xero_time(updated))] * 2
            events += [
                event(tenant, invoice_id, at=xero_time(updated - timedelta(seconds=s)))
                for s in (1, 2, 3)
            ]
        random.Random(13).shuffle(events)
        reset_sandbox_stats(fresh_sandbox)
        for start in range(0, 500, 100):
            response = await post_signed(client, delivery(*events[start : start + 100]))
            assert response.status_code == 200

        await wait_for(lambda: none_pending(session_factory), timeout=15.0)
        calls = tenant_calls(fresh_sandbox, tenant)
        assert 1 <= calls <= 3, calls
        stored = await events_of(session_factory)
        assert len(stored) == 400  # the duplicates are one row each
        async with session_factory() as session:
            webhook_runs = list(
                (
                    await session.execute(
                        select(SyncRun).where(SyncRun.trigger == RunTrigger.WEBHOOK.value)
                    )
                ).scalars()
            )
        assert len(webhook_runs) == 1, [(r.mode, r.status) for r in webhook_runs]
        await assert_complete(session_factory, fresh_sandbox, connection)


async def test_a_few_changed_invoices_are_fetched_by_id_and_reordered_deliveries_converge(
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    fresh_sandbox: RunningSandbox,
) -> None:
    """Edits delivered newest first, each twice, over separate windows: the older event of an
    invoice already refreshed is stale; the result is Xero's."""
    async with background_service(webhook_settings(settings)) as (_, client):
        org = await connected_org(client, session_factory)
        connection = org.connections[0]
        tenant = connection.tenant_id
        await sync(client, org.key, org.org_id, connection_id=str(connection.id), **FULL)
        chosen = (await invoice_ids(session_factory, connection, "AUTHORISED"))[:10]
        first = [edit_in_xero(fresh_sandbox, tenant, i, "edit", reference="one") for i in chosen]
        second = [edit_in_xero(fresh_sandbox, tenant, i, "pay") for i in chosen]
        reset_sandbox_stats(fresh_sandbox)
        newest = delivery(
            *(event(tenant, i, at=xero_time(t)) for i, t in zip(chosen, second, strict=True))
        )
        for _ in range(2):
            assert (await post_signed(client, newest)).status_code == 200
        await wait_for(lambda: none_pending(session_factory))
        assert tenant_calls(fresh_sandbox, tenant) == 1  # ten ids, one call
        older = delivery(
            *(event(tenant, i, at=xero_time(t)) for i, t in zip(chosen, first, strict=True))
        )
        assert (await post_signed(client, older)).status_code == 200
        await wait_for(lambda: none_pending(session_factory))
        statuses = sorted(e.status for e in await events_of(session_factory))
        assert statuses == [EventStatus.STALE.value] * 10 + [EventStatus.SYNCED.value] * 10
        assert tenant_calls(fresh_sandbox, tenant) == 1  # the stale ones cost nothing
        await assert_complete(session_factory, fresh_sandbox, connection)


async def test_stale_events_cost_no_calls(
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    fresh_sandbox: RunningSandbox,
) -> None:
    async with background_service(webhook_settings(settings)) as (_, client):
        org = await connected_org(client, session_factory)
        connection = org.connections[0]
        await sync(client, org.key, org.org_id, connection_id=str(connection.id), **FULL)
        async with session_factory() as session:
            held = list(
                await session.execute(
                    select(Invoice.provider_id, Invoice.provider_updated_at)
                    .where(Invoice.connection_id == connection.id)
                    .limit(20)
                )
            )
        reset_sandbox_stats(fresh_sandbox)
        body = delivery(
            *(event(connection.tenant_id, i, at=xero_time(at)) for i, at in held),
            *(
                event(connection.tenant_id, i, at=xero_time(at - timedelta(minutes=5)))
                for i, at in held
            ),
        )
        assert (await post_signed(client, body)).status_code == 200
        await wait_for(lambda: none_pending(session_factory))
        assert {e.status for e in await events_of(session_factory)} == {EventStatus.STALE.value}
        assert tenant_calls(fresh_sandbox, connection.tenant_id) == 0
        async with session_factory() as session:
            webhook_runs = await session.scalar(
                select(SyncRun.id).where(SyncRun.trigger == RunTrigger.WEBHOOK.value)
            )
        assert webhook_runs is None


async def test_a_connection_that_needs_a_new_consent_gets_its_events_marked_and_no_calls(
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    fresh_sandbox: RunningSandbox,
) -> None:
    async with background_service(webhook_settings(settings)) as (_, client):
        org = await connected_org(client, session_factory)
        connection = org.connections[0]
        async with session_factory() as session, session.begin():
            await session.execute(
                update(Connection)
                .where(Connection.id == connection.id)
                .values(status=ConnectionStatus.NEEDS_REAUTH.value)
            )
        reset_sandbox_stats(fresh_sandbox)
        body = delivery(event(connection.tenant_id, str(uuid.uuid4())))
        assert (await post_signed(client, body)).status_code == 200
        await wait_for(lambda: none_pending(session_factory))
        [stored] = await events_of(session_factory)
        assert stored.status == EventStatus.SKIPPED.value
        assert sandbox_stats(fresh_sandbox)["total"] == 0
