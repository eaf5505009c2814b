"""`/metrics` moves with outbound deliveries: attempts by event type and outcome (delivered,
retrying, given_up) and their durations; no endpoint id or URL in any label."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.settings import Settings
from src.xero_sandbox.server import RunningSandbox
from tests.domains.external_accounting.outbound.test_deliveries import (
    arrivals,
    delivery_log,
    outbound_settings,
    register,
)
from tests.domains.metrics.test_routes import moved, scrape
from tests.fixtures import background_service, connected_to_new_tenant, sync, wait_for
from tests.xero_sandbox.webhook_receiver import WebhookReceiver

ATTEMPTS = "ledgersync_outbound_webhook_attempts_total"
DURATION = "ledgersync_outbound_webhook_attempt_duration_seconds_count"
EVENTS = "ledgersync_outbound_webhook_events_total"


async def test_delivery_attempts_and_their_outcomes_move_the_metrics(
    fresh_sandbox: RunningSandbox,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    two_attempts = outbound_settings(settings).model_copy(update={"outbound_webhook_attempts": 2})
    async with background_service(two_attempts) as (_, client):
        org_id, key, connection = await connected_to_new_tenant(
            client, fresh_sandbox, session_factory, "Metrics Ltd", 1
        )
        with WebhookReceiver() as recovers, WebhookReceiver() as broken:
            recovers.statuses = [500]  # then 200
            broken.statuses = [503, 503]  # both attempts: it is given up
            good = await register(client, key, org_id, recovers.url, "sync.finished")
            bad = await register(client, key, org_id, broken.url, "sync.finished")
            before = await scrape(client)
            result = await sync(client, key, org_id, "accounts", connection_id=str(connection.id))
            assert result["success"] is True, result
            await arrivals(recovers, 2)
            await arrivals(broken, 2)
            logs: dict[str, list[dict[str, Any]]] = {}

            async def settled() -> bool:
                for endpoint in (good, bad):
                    logs[endpoint["id"]] = await delivery_log(client, key, org_id, endpoint["id"])
                return [d["status"] for d in logs[good["id"]]] == ["delivered"] and [
                    d["status"] for d in logs[bad["id"]]
                ] == ["failed"]

            await wait_for(settled, timeout=20)
            after = await scrape(client)

    event = {"event_type": "sync.finished"}
    assert moved(before, after, EVENTS, **event) == 1
    assert moved(before, after, ATTEMPTS, **event, outcome="retrying") == 2
    assert moved(before, after, ATTEMPTS, **event, outcome="delivered") == 1
    assert moved(before, after, ATTEMPTS, **event, outcome="given_up") == 1
    for outcome, attempts in (("retrying", 2), ("delivered", 1), ("given_up", 1)):
        assert moved(before, after, DURATION, **event, outcome=outcome) == attempts
    # Bounded labels: nothing names an endpoint.
    for name, labels in after:
        if name.startswith("ledgersync_outbound_"):
            assert {label for label, _ in labels} <= {"event_type", "outcome", "le"}
            values = {value for _, value in labels}
            assert not values & {good["id"], bad["id"], recovers.url, broken.url}
