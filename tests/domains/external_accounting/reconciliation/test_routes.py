"""`POST /reconcile` (issue 13): admins only, another organisation's connection is a 404, 202 at
once with the queued runs (an accounts run and an invoices run per connection, mode
`reconcile`), which the job queue runs: the silent edit corrected, the deleted account marked."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.settings import Settings
from src.domains.external_accounting.ledger.models import RunStatus, SyncMode, SyncRun
from src.domains.external_accounting.ledger.runs import new_run
from src.domains.organizations.models import Organization, Role
from src.xero_sandbox.server import RunningSandbox
from tests.factories import add_member, bearer, create_org_with_user
from tests.fixtures import (
    background_service,
    connected_org,
    delete_account_at_xero,
    fast_jobs,
    recode_line,
    sync,
)
from tests.ground_truth import assert_complete, ground_truth, in_scope, local_accounts


async def post_reconcile(
    client: httpx.AsyncClient,
    key: str,
    org_id: uuid.UUID,
    prefix: str = "/external-accounting",
    **params: str,
) -> httpx.Response:
    return await client.post(
        f"{prefix}/reconcile", params={"org_id": str(org_id), **params}, headers=bearer(key)
    )


async def ended_runs(
    client: httpx.AsyncClient, key: str, org_id: uuid.UUID, ids: list[str], timeout: float = 30
) -> list[dict[str, Any]]:
    """Follow each run at `GET /sync-runs/{id}` until it ends."""
    deadline = time.monotonic() + timeout
    while True:
        runs = []
        for run_id in ids:
            response = await client.get(
                f"/external-accounting/sync-runs/{run_id}",
                params={"org_id": str(org_id)},
                headers=bearer(key),
            )
            assert response.status_code == 200, response.text
            runs.append(response.json())
        if all(r["status"] not in ("queued", "running") for r in runs):
            return runs
        assert time.monotonic() < deadline, runs
        await asyncio.sleep(0.05)


async def test_an_admin_queues_a_sweep_that_the_job_queue_runs(
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    async with background_service(fast_jobs(settings)) as (_, client):
        org_id, key, connections = await connected_org(client, session_factory)
        connection = connections[0]
        await sync(client, key, org_id)
        await sync(client, key, org_id, "accounts")
        invoice = next(
            i
            for i in ground_truth(fresh_sandbox, connection.tenant_id)
            if i["Status"] == "DRAFT" and in_scope(i)
        )
        code = "429" if invoice["LineItems"][0]["AccountCode"] != "429" else "400"
        recode_line(fresh_sandbox, connection.tenant_id, invoice["InvoiceID"], 0, code)
        savings = next(
            a for a in await local_accounts(session_factory, connection) if a.code == "091"
        )
        deleted = delete_account_at_xero(fresh_sandbox, connection.tenant_id, savings.provider_id)
        assert deleted.status_code == 200

        async with session_factory() as session:
            organization = await session.get(Organization, org_id)
        assert organization is not None
        member = await add_member(session_factory, organization, Role.MEMBER, "m@acme.test")
        refused = await post_reconcile(client, member, org_id)
        assert refused.status_code == 403
        assert set(refused.json()) == {"error", "detail"}

        # Another organisation's admin learns nothing of this connection.
        other, _, other_key = await create_org_with_user(session_factory, name="Other")
        foreign = await post_reconcile(
            client, other_key, other.id, connection_id=str(connection.id)
        )
        assert foreign.status_code == 404
        assert foreign.json()["error"] == "connection_not_found"

        response = await post_reconcile(client, key, org_id, connection_id=str(connection.id))
        assert response.status_code == 202, response.text
        queued = response.json()["sync_runs"]
        assert sorted(r["object_type"] for r in queued) == ["accounts", "invoices"]
        assert {r["connection_id"] for r in queued} == {str(connection.id)}
        assert {r["status"] for r in queued} <= {"queued", "running"}
        assert response.headers["location"] == f"/external-accounting/sync-runs/{queued[0]['id']}"
        runs = {
            r["object_type"]: r
            for r in await ended_runs(client, key, org_id, [r["id"] for r in queued])
        }

        # Under /integrations too, for every connection of the organisation.
        everyone = await post_reconcile(client, key, org_id, prefix="/integrations")
        assert everyone.status_code == 202, everyone.text
        assert everyone.headers["location"].startswith("/integrations/sync-runs/")
        assert len(everyone.json()["sync_runs"]) == 2 * len(connections)
        await ended_runs(client, key, org_id, [r["id"] for r in everyone.json()["sync_runs"]])

    for run in runs.values():
        assert (run["status"], run["mode"], run["trigger"]) == ("success", "reconcile", "reconcile")
        assert (run["found"], run["corrected"]) == (1, 1), run
    assert runs["accounts"]["api_calls"] == 1
    assert runs["invoices"]["params"]["max_calls"] == settings.reconcile_max_calls
    await assert_complete(session_factory, fresh_sandbox, connection, months_back=12)
    tombstone = next(
        a for a in await local_accounts(session_factory, connection) if a.code == "091"
    )
    assert tombstone.status == "DELETED"


async def test_a_connection_with_an_invoice_sync_waiting_is_not_swept(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connections = await connected_org(client, session_factory)
    connection = connections[0]
    waiting = new_run(
        connection,
        "invoices",
        mode=SyncMode.INCREMENTAL,
        params={},
        status=RunStatus.QUEUED,
    )
    async with session_factory() as session:
        session.add(waiting)
        await session.commit()
    response = await post_reconcile(client, key, org_id, connection_id=str(connection.id))
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "sync_in_progress"
    assert response.json()["sync_run_id"] == str(waiting.id)
    async with session_factory() as session:
        runs = (await session.execute(select(SyncRun.mode))).scalars().all()
    assert list(runs) == ["incremental"]  # nothing queued, not even the accounts run
