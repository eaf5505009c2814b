"""Invoice and account syncs against the sandbox over real HTTP, on a real database.

Long because it is the sync service's whole contract (modes, counts, cursors, resumes, pauses,
accounts); leases live in ledger/test_runs.py, faults in test_sync_faults.py."""

from __future__ import annotations

import math
import uuid
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.database import utcnow
from src.core.settings import Settings
from src.domains.external_accounting.connections.usage import UsageTally
from src.domains.external_accounting.ledger.models import Invoice, SyncMode, SyncRun
from src.domains.external_accounting.ledger.runs import new_run
from src.domains.external_accounting.xero.data.accounting_client import XeroAccountingClient
from src.domains.external_accounting.xero.data.sync_service import XeroSyncService
from src.domains.external_accounting.xero.data.xero_models import XeroInvoicePage, decode_invoices
from src.domains.organizations.models import Role
from src.xero_sandbox.server import RunningSandbox
from tests.factories import add_member, bearer, create_org_with_user
from tests.fixtures import (
    SANDBOX_CONFIG,
    app_client,
    clear_faults,
    connected_org,
    connected_to_new_tenant,
    inject_faults,
    invoices_url,
    post_sync,
    reset_sandbox_stats,
    running_app,
    sandbox_stats,
    sync,
    tighten_limits,
)
from tests.ground_truth import (
    assert_complete,
    assert_matches_truth,
    ground_truth,
    in_scope,
    local_accounts,
)

STORED_FIELDS = (Invoice.id, Invoice.provider_updated_at, Invoice.status, Invoice.total)


async def test_full_sync_equals_the_ground_truth(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connections = await connected_org(client, session_factory)
    result = await sync(client, key, org_id, incremental="true")
    assert result["object_type"] == "invoices"
    assert result["success"] is True
    assert "invoices" not in {k.lower() for k in result if k != "object_type"}
    expected_total = 0
    for connection in connections:
        truth = ground_truth(fresh_sandbox, connection.tenant_id)
        expected = {i["InvoiceID"] for i in truth if in_scope(i)}
        expected_total += len(expected)
        await assert_matches_truth(session_factory, connection, truth, expected)
    assert result["count"] == expected_total == result["created"]
    assert {c["mode"] for c in result["connections"]} == {"full"}
    assert result["last_modified"].endswith("Z")
    # Tombstones: voided and deleted invoices in scope are kept with their status.
    async with session_factory() as session:
        statuses = set((await session.execute(select(Invoice.status))).scalars())
    assert {"VOIDED", "DELETED", "PAID", "AUTHORISED"} <= statuses


async def test_accounts_sync_equals_the_ground_truth(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connections = await connected_org(client, session_factory)
    result = await sync(client, key, org_id, "accounts")
    assert result["object_type"] == "accounts"
    for connection in connections:
        truth = httpx.get(
            f"{fresh_sandbox.base_url}/_sandbox/tenants/{connection.tenant_id}/accounts"
        ).json()
        stored = {a.provider_id: a for a in await local_accounts(session_factory, connection)}
        assert set(stored) == {a["AccountID"] for a in truth["Accounts"]}
        for account in truth["Accounts"]:
            row = stored[account["AccountID"]]
            assert (row.code, row.name, row.type, row.class_, row.status) == (
                account["Code"],
                account["Name"],
                account["Type"],
                account["Class"],
                account["Status"],
            )
            assert row.bank_account_number == account.get("BankAccountNumber")
            assert row.tax_type == account["TaxType"]
    again = await sync(client, key, org_id, "accounts")
    assert (again["created"], again["updated"]) == (0, 0)
    banks = await sync(client, key, org_id, "accounts", **{"account_types[]": "BANK"})
    assert banks["count"] == 2 * 4
    listed = await client.get(
        "/external-accounting/accounts",
        params={"org_id": str(org_id), "type": "BANK"},
        headers=bearer(key),
    )
    assert {a["type"] for a in listed.json()} == {"BANK"}
    assert len(listed.json()) == 8


async def test_incremental_with_nothing_changed_is_one_call_and_changes_nothing(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, _ = await connected_org(client, session_factory)
    await sync(client, key, org_id)
    async with session_factory() as session:
        before = (await session.execute(select(*STORED_FIELDS))).all()
    result = await sync(client, key, org_id, incremental="true")
    assert [c["mode"] for c in result["connections"]] == ["incremental", "incremental"]
    assert [c["api_calls"] for c in result["connections"]] == [1, 1]
    assert (result["created"], result["updated"]) == (0, 0)
    async with session_factory() as session:
        after = (await session.execute(select(*STORED_FIELDS))).all()
    # Nothing rewritten (synced_at may move: it says when Xero last confirmed an invoice).
    assert sorted(after) == sorted(before)


async def test_incremental_picks_up_an_old_invoice_paid_today(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connections = await connected_org(client, session_factory)
    await sync(client, key, org_id)
    tenant = connections[0].tenant_id
    truth = ground_truth(fresh_sandbox, tenant)
    old = next(
        i for i in truth if i["Status"] == "AUTHORISED" and not in_scope({**i, "Status": "PAID"})
    )
    base = invoices_url(fresh_sandbox, tenant)
    assert httpx.post(f"{base}/{old['InvoiceID']}/pay").status_code == 200
    draft = next(i for i in truth if i["Status"] == "DRAFT")
    assert httpx.post(f"{base}/{draft['InvoiceID']}/delete").status_code == 200
    result = await sync(client, key, org_id, connection_id=str(connections[0].id))
    assert (result["count"], result["updated"]) == (2, 2)
    truth = ground_truth(fresh_sandbox, tenant)
    expected = {i["InvoiceID"] for i in truth if in_scope(i)} | {
        old["InvoiceID"],
        draft["InvoiceID"],
    }
    await assert_matches_truth(session_factory, connections[0], truth, expected)


async def test_full_sync_call_count_stays_at_the_floor(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Big Ltd", 4500
    )
    tenant = connection.tenant_id
    result = await sync(client, key, org_id, connection_id=str(connection.id), months_back="120")
    truth = ground_truth(fresh_sandbox, tenant)
    window = [i for i in truth if in_scope({**i, "Status": "x"}, 120)]
    window_ids = {i["InvoiceID"] for i in window}
    older_outstanding = [
        i for i in truth if i["Status"] == "AUTHORISED" and i["InvoiceID"] not in window_ids
    ]
    # Phase 1's pages, then phase 2's (one call even when nothing older is outstanding).
    floor = math.ceil(len(window) / 1000) + max(1, math.ceil(len(older_outstanding) / 1000))
    assert result["count"] == len(window) + len(older_outstanding)
    # Paging side by side costs at most a part-filled last page per partition: the window
    # splits into at most the in-flight limit's 5 partitions here (4,500 invoices). How many it
    # splits into depends on the latency and writing time it measures (the in-process sandbox's
    # pages take ~0.4 s); `test_partition_plan` pins the decision itself.
    assert result["api_calls"] <= floor + 5, (result["api_calls"], floor)
    assert sandbox_stats(fresh_sandbox)["by_tenant"][tenant] == result["api_calls"]
    await assert_matches_truth(
        session_factory, connection, truth, {i["InvoiceID"] for i in truth if in_scope(i, 120)}
    )


async def test_failure_mid_sync_keeps_pages_and_a_rerun_completes(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Flaky Ltd", 3000
    )
    # The first page of each phase, then an outage longer than the retries of every partition.
    inject_faults(fresh_sandbox, path_contains="/Invoices", skip_first=2, next_errors=[503] * 25)
    failed = await sync(client, key, org_id, connection_id=str(connection.id), months_back="120")
    assert failed["success"] is False
    assert failed["error"] == "provider_unavailable"
    async with session_factory() as session:
        kept = (await session.execute(select(func.count()).select_from(Invoice))).scalar_one()
        run = await session.get(SyncRun, uuid.UUID(failed["sync_run_id"]))
    assert kept == 1000  # the window's first page (phase 2 is empty), committed before it
    assert run is not None
    assert (run.status, run.error, run.count) == ("failed", "provider_unavailable", 1000)
    assert "503" in (run.error_detail or "")
    assert run.checkpoint is not None
    assert run.checkpoint["phase"] == 0
    partitions = run.checkpoint["partitions"]
    # Each partition's own position: phase 2's one partition (done, unless on a loaded machine
    # its one call reached Xero after the outage began), the window's from its first page.
    assert len([p for p in partitions if p["phase"] == 1]) == 1
    window = [p for p in partitions if p["phase"] == 0]
    assert window
    assert all(p["since"] is not None and not p["done"] for p in window)
    clear_faults(fresh_sandbox)
    rerun = await sync(client, key, org_id, connection_id=str(connection.id), months_back="120")
    assert rerun["success"] is True
    # The rerun resumed from the checkpoint: it did not fetch the stored page again.
    assert rerun["connections"][0]["mode"] == "resume"
    assert rerun["count"] < 3000 - 900
    await assert_complete(session_factory, fresh_sandbox, connection)


async def test_transient_faults_are_retried_to_a_complete_sync(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connections = await connected_org(client, session_factory)
    inject_faults(
        fresh_sandbox,
        path_contains="/Invoices",
        next_errors=[500, 503],
        next_drops=1,
        next_malformed=1,
        rate_limit_burst=1,
        rate_limit_retry_after=0,
    )
    result = await sync(client, key, org_id, connection_id=str(connections[0].id))
    assert result["success"] is True
    assert result["api_calls"] == 2 + 5
    await assert_complete(session_factory, fresh_sandbox, connections[0], months_back=12)


async def test_daily_limit_fails_cleanly_with_resume_after(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connections = await connected_org(client, session_factory)
    inject_faults(
        fresh_sandbox, rate_limit_burst=1, rate_limit_problem="day", rate_limit_retry_after=3600
    )
    result = await sync(client, key, org_id, connection_id=str(connections[0].id))
    assert result["success"] is False
    assert result["error"] == "rate_limited_daily"
    assert result["resume_after"] is not None
    # The calls in flight when Xero said the day was spent: one per phase (side by side).
    assert result["api_calls"] == 2
    run_id = uuid.UUID(result["sync_run_id"])
    async with session_factory() as session:
        run = await session.get(SyncRun, run_id)
        assert run is not None
        assert run.status == "paused"
        assert run.paused_until is not None
    # Until the day resets, a sync answers at once without spending a call.
    calls = sandbox_stats(fresh_sandbox)["total"]
    again = await sync(client, key, org_id, connection_id=str(connections[0].id))
    assert (again["success"], again["error"], again["api_calls"]) == (
        False,
        "rate_limited_daily",
        0,
    )
    assert sandbox_stats(fresh_sandbox)["total"] == calls
    # Once it has passed, the sync runs (from what the other phase's page stored, if any).
    async with session_factory() as session:
        await session.execute(
            update(SyncRun).where(SyncRun.id == run_id).values(paused_until=utcnow())
        )
        await session.commit()
    resumed = await sync(client, key, org_id, connection_id=str(connections[0].id))
    assert resumed["success"] is True
    await assert_complete(session_factory, fresh_sandbox, connections[0], months_back=12)


async def test_daily_limit_mid_sync_pauses_and_resumes_from_the_checkpoint(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Busy Ltd", 3000
    )
    inject_faults(
        fresh_sandbox,
        path_contains="/Invoices",
        skip_first=2,
        rate_limit_burst=1,
        rate_limit_problem="day",
        rate_limit_retry_after=60,
    )
    paused = await sync(client, key, org_id, connection_id=str(connection.id), months_back="120")
    assert (paused["success"], paused["error"]) == (False, "rate_limited_daily")
    # The window's first page, and the pages of the partitions it split into that were in
    # flight when Xero said the day was spent (the one refused is not among them).
    assert 1000 <= paused["count"] < 3000
    async with session_factory() as session:
        run = await session.get(SyncRun, uuid.UUID(paused["sync_run_id"]))
        assert run is not None
        assert run.checkpoint is not None
        unfinished = [p for p in run.checkpoint["partitions"] if not p["done"]]
        await session.execute(update(SyncRun).values(paused_until=utcnow()))
        await session.commit()
    assert unfinished
    resumed = await sync(client, key, org_id, connection_id=str(connection.id), months_back="120")
    assert resumed["connections"][0]["mode"] == "resume"
    assert resumed["success"] is True
    # Only what is left, partition by partition (each from its own position), not all again.
    left = 3000 - paused["count"]
    assert resumed["count"] <= left + 10
    assert resumed["api_calls"] <= math.ceil(left / 1000) + len(unfinished)
    await assert_complete(session_factory, fresh_sandbox, connection)


async def test_a_second_sync_of_the_same_connection_is_refused_while_one_runs(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connections = await connected_org(client, session_factory)
    async with session_factory() as session:
        session.add(
            SyncRun(
                organization_id=org_id,
                connection_id=connections[0].id,
                object_type="invoices",
                mode="full",
                params={},
                status="running",
            )
        )
        await session.commit()
    response = await post_sync(client, key, org_id, connection_id=str(connections[0].id))
    assert response.status_code == 409
    assert response.json()["error"] == "sync_in_progress"
    # Accounts are another object type: not blocked.
    assert (await sync(client, key, org_id, "accounts", connection_id=str(connections[0].id)))[
        "success"
    ]
    # A run that stopped beating long ago no longer blocks.
    async with session_factory() as session:
        run = (
            await session.execute(select(SyncRun).where(SyncRun.status == "running"))
        ).scalar_one()
        run.heartbeat_at = utcnow().replace(year=2020)
        await session.commit()
    assert (await sync(client, key, org_id, connection_id=str(connections[0].id)))["success"]


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({"invoice_types[]": "ACCREC,NOPE"}, 422, "invalid_parameter"),
        ({"months_back": "0"}, 422, "invalid_parameter"),
        ({"months_back": "121"}, 422, "invalid_parameter"),
        ({"incremental": "maybe"}, 422, "invalid_parameter"),
        ({"connection_id": str(uuid.UUID(int=5))}, 404, "connection_not_found"),
        ({"tenant_id": "no-such-tenant"}, 404, "connection_not_found"),
    ],
)
async def test_bad_sync_requests_get_clear_errors(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    params: dict[str, str],
    status: int,
    error: str,
) -> None:
    org_id, key, _ = await connected_org(client, session_factory)
    response = await post_sync(client, key, org_id, **params)
    assert (response.status_code, response.json()["error"]) == (status, error), response.text
    assert response.json()["detail"]


async def test_a_connection_and_a_tenant_that_disagree_are_refused(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connections = await connected_org(client, session_factory)
    first, second = connections
    for what in ("invoices", "accounts"):
        response = await post_sync(
            client, key, org_id, what, connection_id=str(first.id), tenant_id=second.tenant_id
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "invalid_parameter"
        assert response.json()["parameter"] == "tenant_id"
    # Agreeing, they name the same connection.
    result = await sync(
        client, key, org_id, "accounts", connection_id=str(first.id), tenant_id=first.tenant_id
    )
    assert [c["connection_id"] for c in result["connections"]] == [str(first.id)]


async def test_who_may_sync_and_what_without_a_connection(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    organization, _, key = await create_org_with_user(session_factory)
    member = await add_member(session_factory, organization, Role.MEMBER, "m@acme.test")
    _, _, outsider = await create_org_with_user(session_factory, name="Other")
    url, params = "/integrations/invoices/sync", {"org_id": str(organization.id)}
    none = await client.post(url, params=params, headers=bearer(member))
    assert (none.status_code, none.json()["error"]) == (409, "no_active_connection")
    other = await client.post(url, params=params, headers=bearer(outsider))
    assert (other.status_code, other.json()["error"]) == (403, "not_a_member")
    anonymous = await client.post(url, params=params)
    assert anonymous.status_code == 401
    assert key


async def test_invoice_types_in_every_spelling(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connections = await connected_org(client, session_factory)
    result = await sync(
        client, key, org_id, connection_id=str(connections[0].id), invoice_types="accrec"
    )
    async with session_factory() as session:
        types = set((await session.execute(select(Invoice.type))).scalars())
    assert types == {"ACCREC"}
    truth = ground_truth(fresh_sandbox, connections[0].tenant_id)
    assert result["count"] == sum(1 for i in truth if i["Type"] == "ACCREC" and in_scope(i))
    repeated = await client.post(
        "/external-accounting/invoices/sync",
        params=[
            ("org_id", str(org_id)),
            ("invoice_types", "ACCREC"),
            ("invoice_types", "ACCPAY"),
            ("connection_id", str(connections[0].id)),
        ],
        headers=bearer(key),
    )
    assert (
        repeated.json()["connections"][0]["mode"] == "full"
    )  # a new scope starts with a full sync


async def test_reading_back_invoices_runs_and_errors(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, _ = await connected_org(client, session_factory)
    result = await sync(client, key, org_id)
    params = {"org_id": str(org_id), "limit": "50", "type": "ACCREC", "status": "PAID,AUTHORISED"}
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await client.get(
            "/external-accounting/invoices",
            params={**params, **({"cursor": cursor} if cursor else {})},
            headers=bearer(key),
        )
        assert page.status_code == 200
        seen += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    async with session_factory() as session:
        expected = (
            await session.execute(
                select(func.count())
                .select_from(Invoice)
                .where(Invoice.type == "ACCREC", Invoice.status.in_(["PAID", "AUTHORISED"]))
            )
        ).scalar_one()
    assert len(seen) == expected == len({s["id"] for s in seen})
    dates = [s["date"] for s in seen]
    assert dates == sorted(dates, reverse=True)
    detail = await client.get(
        f"/external-accounting/invoices/{seen[0]['id']}",
        params={"org_id": str(org_id)},
        headers=bearer(key),
    )
    assert detail.json()["line_items"]
    assert isinstance(detail.json()["total"], str)  # Decimal travels as an exact string
    runs = await client.get(
        "/external-accounting/sync-runs", params={"org_id": str(org_id)}, headers=bearer(key)
    )
    assert {r["status"] for r in runs.json()} == {"success"}
    one = await client.get(
        f"/external-accounting/sync-runs/{result['connections'][0]['sync_run_id']}",
        params={"org_id": str(org_id)},
        headers=bearer(key),
    )
    assert one.json()["api_calls"] == result["connections"][0]["api_calls"]
    bad_cursor = await client.get(
        "/external-accounting/invoices",
        params={"org_id": str(org_id), "cursor": "zzz"},
        headers=bearer(key),
    )
    assert (bad_cursor.status_code, bad_cursor.json()["error"]) == (422, "invalid_parameter")
    missing = await client.get(
        f"/external-accounting/invoices/{uuid.uuid4()}",
        params={"org_id": str(org_id)},
        headers=bearer(key),
    )
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    naive = await client.get(
        "/external-accounting/invoices",
        params={"org_id": str(org_id), "updated_since": "2025-01-01T00:00:00"},
        headers=bearer(key),
    )
    assert naive.status_code == 422


async def test_needs_reauth_connection_gives_409_on_sync(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, _ = await connected_org(client, session_factory)
    fresh_sandbox.runtime.identity.refresh_tokens.clear()
    # The access token is dead too, so Xero answers 401 and the refresh fails.
    fresh_sandbox.runtime.identity.access_tokens.clear()
    response = await post_sync(client, key, org_id)
    assert response.status_code == 409
    assert response.json()["error"] == "reauthorisation_required"
    assert "connect_url" in response.json()
    again = await post_sync(client, key, org_id)
    assert again.json()["error"] == "reauthorisation_required"


async def test_disconnect_keeps_synced_data_unless_purged(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connections = await connected_org(client, session_factory)
    await sync(client, key, org_id)
    first, second = connections

    async def count(connection_id: uuid.UUID) -> int:
        async with session_factory() as session:
            query = (
                select(func.count())
                .select_from(Invoice)
                .where(Invoice.connection_id == connection_id)
            )
            return int((await session.execute(query)).scalar_one())

    kept_before = await count(first.id)
    assert (
        await client.delete(f"/external-accounting/connections/{first.id}", headers=bearer(key))
    ).status_code == 204
    assert await count(first.id) == kept_before > 0
    purged = await client.delete(
        f"/external-accounting/connections/{second.id}?purge=true", headers=bearer(key)
    )
    assert purged.status_code == 204
    assert await count(second.id) == 0
    after = await post_sync(client, key, org_id)
    assert (after.status_code, after.json()["error"]) == (409, "no_active_connection")


async def test_a_paced_sync_never_meets_a_429(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Tight Ltd", 3500
    )
    # Two calls a minute, a Xero minute lasting one second: the sync needs several minutes.
    tighten_limits(fresh_sandbox, minute_limit=2, time_scale=60)
    reset_sandbox_stats(fresh_sandbox)
    # Our minute is a little longer than the sandbox's: the limiter's jitter margin (a quarter
    # of a second at this compression) is what a real minute's second of margin is for, and a
    # loaded 2-core machine delays a call's arrival by more than that (seen once as a 429).
    paced = settings.model_copy(update={"xero_minute_limit": 2, "xero_minute_seconds": 1.5})
    try:
        async with running_app(paced) as app, app_client(app) as paced_client:
            result = await sync(
                paced_client, key, org_id, connection_id=str(connection.id), months_back="120"
            )
            limiter = app.state.xero_throttle.limiter
    finally:
        tighten_limits(fresh_sandbox, minute_limit=SANDBOX_CONFIG.minute_limit, time_scale=1)
    assert result["success"] is True
    assert result["api_calls"] >= 5  # more calls than two minutes allow...
    assert limiter.waited_s > 0  # ...so the limiter made calls wait for earlier calls' minutes
    assert result["duration_seconds"] >= 2.0
    # ...and no 429.
    assert sandbox_stats(fresh_sandbox)["by_status"] == {"200": result["api_calls"]}
    await assert_complete(session_factory, fresh_sandbox, connection)


async def test_an_invoice_edited_while_the_run_pages_is_counted_once(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """It reaches the run twice (old version, then the edit at the end of the keyset); the run
    remembers no ids, the database tells it the invoice was already written by this run."""
    _, _, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Edited Ltd", 1
    )

    def page(updated_ms: int, total: str) -> XeroInvoicePage:
        invoice = (
            f'{{"InvoiceID":"e-1","Type":"ACCREC","Status":"AUTHORISED","Total":{total},'
            f'"UpdatedDateUTC":"/Date({updated_ms}+0000)/","LineItems":[{{"LineAmount":{total}}}]}}'
        )
        return decode_invoices(f'{{"Invoices":[{invoice}]}}'.encode(), 1)

    no_calls = cast(
        XeroAccountingClient, SimpleNamespace(api_calls=0, limit_wait_s=0.0, usage=UsageTally())
    )  # pages come from here
    service = XeroSyncService(session_factory, no_calls)
    progress = await service.runs.start(
        connection, new_run(connection, "invoices", mode=SyncMode.FULL, params={})
    )
    for sighting in (page(1_700_000_000_000, "10.00"), page(1_800_000_000_000, "12.50")):
        pairs = list(zip(sighting.invoices, sighting.raw, strict=True))
        await service.invoices.store(connection, progress, pairs, None)
    assert (progress.count, progress.created, progress.updated) == (1, 1, 1)
    async with session_factory() as session:
        stored = (
            await session.execute(select(Invoice).where(Invoice.provider_id == "e-1"))
        ).scalar_one()
    assert stored.total == Decimal("12.50")
