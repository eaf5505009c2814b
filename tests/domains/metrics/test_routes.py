"""`/metrics`: Prometheus's parser reads it, and its counters move with what really happened at
the sandbox (calls by endpoint, 429s by problem, token refreshes), with each run's end and what
it wrote, and with webhook deliveries; it stays out of the OpenAPI document and can be off."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.settings import Settings
from src.xero_sandbox.server import RunningSandbox
from tests.fixtures import (
    WEBHOOK_KEY,
    app_client,
    connected_org,
    inject_faults,
    injected_faults,
    post_webhook,
    reset_sandbox_stats,
    running_app,
    sandbox_stats,
    sync,
    token_calls,
    xero_delivery,
    xero_event,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    """Every sample of `/metrics`, parsed by prometheus_client's own parser."""
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_counters_move_with_a_sync_as_the_sandbox_saw_it(
    client: httpx.AsyncClient,
    session_factory: async_sessionmaker[AsyncSession],
    fresh_sandbox: RunningSandbox,
) -> None:
    org = await connected_org(client, session_factory)
    reset_sandbox_stats(fresh_sandbox)
    before = await scrape(client)

    invoices = await sync(client, org.key, org.org_id, incremental="false")
    accounts = await sync(client, org.key, org.org_id, "accounts")
    after = await scrape(client)

    stats = sandbox_stats(fresh_sandbox)
    assert stats["by_path"]["/Invoices"] > 0
    for endpoint in ("/Invoices", "/Accounts"):
        counted = moved(
            before, after, "ledgersync_xero_calls_total", endpoint=endpoint, status="200"
        )
        assert counted == stats["by_path"][endpoint]
    runs = len(org.connections)
    assert (
        moved(before, after, "ledgersync_sync_runs_total", object_type="invoices", status="success")
        == runs
    )
    assert (
        moved(before, after, "ledgersync_sync_runs_total", object_type="accounts", status="success")
        == runs
    )
    assert (
        moved(before, after, "ledgersync_sync_run_duration_seconds_count", object_type="invoices")
        == runs
    )
    created = sum(c["created"] for c in invoices["connections"])
    assert created > 0
    assert (
        moved(
            before,
            after,
            "ledgersync_records_written_total",
            object_type="invoices",
            change="created",
        )
        == created
    )
    accounts_created = sum(c["created"] for c in accounts["connections"])
    assert (
        moved(
            before,
            after,
            "ledgersync_records_written_total",
            object_type="accounts",
            change="created",
        )
        == accounts_created
    )
    # Nothing per tenant unless METRICS_TENANT_LABELS says so.
    assert not any(name == "ledgersync_xero_tenant_calls_total" for name, _ in after)

    # An incremental sync with nothing new writes nothing.
    again = await scrape(client)
    await sync(client, org.key, org.org_id)
    last = await scrape(client)
    assert (
        moved(
            again,
            last,
            "ledgersync_records_written_total",
            object_type="invoices",
            change="created",
        )
        == 0
    )
    assert (
        moved(again, last, "ledgersync_sync_runs_total", object_type="invoices", status="success")
        == runs
    )


async def test_a_429_from_the_sandbox_moves_the_rate_limit_counter(
    client: httpx.AsyncClient,
    session_factory: async_sessionmaker[AsyncSession],
    fresh_sandbox: RunningSandbox,
) -> None:
    org = await connected_org(client, session_factory)
    inject_faults(
        fresh_sandbox, rate_limit_burst=3, rate_limit_problem="minute", rate_limit_retry_after=0
    )
    before = await scrape(client)
    result = await sync(client, org.key, org.org_id, incremental="false")
    after = await scrape(client)

    assert result["success"] is True
    struck = injected_faults(fresh_sandbox)["rate_limit"]
    assert struck == 3
    assert moved(before, after, "ledgersync_xero_rate_limited_total", problem="minute") == struck
    assert (
        moved(before, after, "ledgersync_xero_calls_total", endpoint="/Invoices", status="429")
        == struck
    )
    assert moved(before, after, "ledgersync_xero_rate_limited_total", problem="day") == 0


async def test_token_refreshes_are_counted(
    client: httpx.AsyncClient,
    session_factory: async_sessionmaker[AsyncSession],
    fresh_sandbox: RunningSandbox,
) -> None:
    org = await connected_org(client, session_factory)
    refreshes_before = token_calls(fresh_sandbox).get("refresh_token", 0)
    inject_faults(fresh_sandbox, expire_tokens_after=1)
    before = await scrape(client)
    result = await sync(client, org.key, org.org_id, incremental="false")
    after = await scrape(client)

    assert result["success"] is True
    refreshed = token_calls(fresh_sandbox).get("refresh_token", 0) - refreshes_before
    assert refreshed >= 1
    assert (
        moved(before, after, "ledgersync_xero_token_refreshes_total", outcome="refreshed")
        == refreshed
    )
    assert (
        moved(before, after, "ledgersync_xero_calls_total", endpoint="/Invoices", status="401") >= 1
    )


async def test_webhook_deliveries_received_and_rejected(
    settings: Settings, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    with_key = settings.model_copy(update={"xero_webhook_key": SecretStr(WEBHOOK_KEY)})
    async with running_app(with_key) as app, app_client(app) as client:
        before = await scrape(client)
        body = xero_delivery(
            xero_event(
                "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-00000000000a"
            ),
            xero_event(
                "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-00000000000b"
            ),
        )
        assert (await post_webhook(client, body)).status_code == 200
        assert (await post_webhook(client, body, key="not-the-key")).status_code == 401
        assert (await post_webhook(client, b"[1, 2]")).status_code == 400
        after = await scrape(client)

    assert moved(before, after, "ledgersync_webhook_events_received_total") == 2
    assert (
        moved(before, after, "ledgersync_webhook_deliveries_rejected_total", reason="signature")
        == 1
    )
    assert (
        moved(before, after, "ledgersync_webhook_deliveries_rejected_total", reason="invalid") == 1
    )


async def test_metrics_are_not_in_the_openapi_document_and_can_be_off(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    document = (await client.get("/openapi.json")).json()
    assert "/metrics" not in document["paths"]
    async with running_app(settings.model_copy(update={"metrics_enabled": False})) as off:
        async with app_client(off) as off_client:
            assert (await off_client.get("/metrics")).status_code == 404


async def test_tenant_labels_only_when_the_setting_allows(
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    fresh_sandbox: RunningSandbox,
) -> None:
    async with running_app(settings.model_copy(update={"metrics_tenant_labels": True})) as app:
        async with app_client(app) as client:
            org = await connected_org(client, session_factory)
            reset_sandbox_stats(fresh_sandbox)
            before = await scrape(client)
            await sync(client, org.key, org.org_id, "accounts")
            after = await scrape(client)
    for connection in org.connections:
        calls = moved(
            before, after, "ledgersync_xero_tenant_calls_total", tenant_id=connection.tenant_id
        )
        assert calls == sandbox_stats(fresh_sandbox)["by_tenant"][connection.tenant_id]
        assert calls >= 1
