"""Every line logged during a sync carries its run, connection, organisation and tenant ids
(and the request's id when a request started it), as JSON."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.logging import JsonFormatter
from src.xero_sandbox.server import RunningSandbox
from tests.factories import bearer
from tests.fixtures import connected_to_new_tenant, inject_faults, injected_faults


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the service logs at WARNING and above, formatted as in production."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


async def test_a_retry_logged_mid_sync_names_the_run_the_connection_and_the_request(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    json_lines: io.StringIO,
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Logged Ltd", 30
    )
    inject_faults(fresh_sandbox, path_contains="/Invoices", next_errors=[503])
    response = await client.post(
        "/external-accounting/invoices/sync",
        params={"org_id": str(org_id), "connection_id": str(connection.id)},
        headers={**bearer(key), "X-Request-ID": "sync-request-7"},
    )
    assert response.status_code == 200, response.text
    assert sum(injected_faults(fresh_sandbox).values()) == 1
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    retries = [line for line in lines if line["event"].startswith("xero call failed")]
    assert retries, lines
    for line in retries:
        assert line["run_id"] == response.json()["sync_run_id"]
        assert line["connection_id"] == str(connection.id)
        assert line["organization_id"] == str(org_id)
        assert line["tenant_id"] == connection.tenant_id
        assert line["request_id"] == "sync-request-7"
