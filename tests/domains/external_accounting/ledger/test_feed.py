"""The change feed: every change exactly once, in commit order, also while syncs are writing;
on PostgreSQL a transaction that took a lower id but commits later is served, not skipped."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.database import utcnow
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.ledger.models import LedgerChange
from src.domains.external_accounting.ledger.repository import LedgerRepository
from src.domains.external_accounting.ledger.rows import ChangeRow
from src.xero_sandbox.server import RunningSandbox
from tests.factories import bearer
from tests.fixtures import (
    ON_POSTGRES,
    add_tenant,
    connected_org,
    connected_to_new_tenant,
    sync,
    wait_for,
)

FEED = "/external-accounting/changes"


async def _page(
    client: httpx.AsyncClient, key: str, org_id: uuid.UUID, cursor: str | None, limit: int
) -> dict[str, Any]:
    params = {"org_id": str(org_id), "limit": str(limit)}
    if cursor is not None:
        params["cursor"] = cursor
    response = await client.get(FEED, params=params, headers=bearer(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _recorded(
    session_factory: async_sessionmaker[AsyncSession], org_id: uuid.UUID
) -> list[tuple[str, int]]:
    async with session_factory() as session:
        result = await session.execute(
            select(LedgerChange.record_id, LedgerChange.version).where(
                LedgerChange.organization_id == org_id
            )
        )
        return [(str(record), version) for record, version in result]


async def test_the_feed_pages_through_thousands_of_changes_while_syncs_write(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    add_tenant(fresh_sandbox, "Feed One", 1500)
    add_tenant(fresh_sandbox, "Feed Two", 1500)
    org_id, key, connections = await connected_org(client, session_factory)
    assert len(connections) == 4
    writing = True
    read: list[tuple[str, int]] = []
    pages_while_writing = 0

    async def writers() -> None:
        nonlocal writing
        try:
            # One writer per connection (each its own lease), all at once: their page
            # transactions interleave and commit in whatever order they finish.
            await asyncio.gather(
                *(
                    sync(client, key, org_id, connection_id=str(c.id), months_back="120")
                    for c in connections
                )
            )
            for connection in connections:
                touched = httpx.post(
                    f"{fresh_sandbox.base_url}/_sandbox/tenants/{connection.tenant_id}"
                    "/invoices/touch",
                    json={"count": 100, "seed": 3},
                )
                assert touched.is_success
            await asyncio.gather(
                *(sync(client, key, org_id, connection_id=str(c.id)) for c in connections)
            )
        finally:
            writing = False

    async def reader() -> None:
        nonlocal pages_while_writing
        cursor = None
        expected: int | None = None
        deadline = 0.0
        while True:
            still_writing = writing
            page = await _page(client, key, org_id, cursor, limit=97)
            read.extend((c["record_id"], c["version"]) for c in page["changes"])
            cursor = page["next_cursor"]
            if still_writing and page["changes"]:
                pages_while_writing += 1
            if not still_writing:
                if expected is None:
                    expected = len(await _recorded(session_factory, org_id))
                    # On PostgreSQL the last rows may wait for an unrelated transaction.
                    deadline = time.monotonic() + 30
                if not page["has_more"] and len(read) >= expected:
                    return
                assert time.monotonic() < deadline, "the feed never served every change"
            if not page["has_more"]:
                await asyncio.sleep(0.01)

    await asyncio.gather(writers(), reader())
    recorded = await _recorded(session_factory, org_id)
    assert len(recorded) >= 3600 + 4 * 100  # every invoice created, then 100 touched per tenant
    assert len(read) == len(set(read)), "a change was served twice"
    assert sorted(read) == sorted(recorded), "a change was skipped"
    assert pages_while_writing > 3, "the reader did not read while the syncs wrote"
    # Each record's versions come in order.
    seen: dict[str, int] = {}
    for record, version in read:
        assert version == seen.get(record, 0) + 1
        seen[record] = version


async def test_a_bad_cursor_is_a_400_in_the_error_shape(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, _ = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Cursor Ltd", 1
    )
    forged = [
        "not a cursor",
        base64.urlsafe_b64encode(b"v1.x.y").decode(),
        base64.urlsafe_b64encode(b"v1.99999999999999999999.1").decode(),
        base64.urlsafe_b64encode(b"v2.1.1").decode(),
        "%%%",
    ]
    for cursor in forged:
        response = await client.get(
            FEED, params={"org_id": str(org_id), "cursor": cursor}, headers=bearer(key)
        )
        assert response.status_code == 400, (cursor, response.text)
        body = response.json()
        assert body["error"] == "invalid_cursor"
        assert set(body) == {"error", "detail"}
    # An issued cursor is accepted, also on an empty page.
    empty = await _page(client, key, org_id, None, 10)
    assert empty["changes"] == []
    assert empty["has_more"] is False
    again = await _page(client, key, org_id, empty["next_cursor"], 10)
    assert again["next_cursor"] == empty["next_cursor"]


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
async def test_a_lower_id_committed_later_is_served_not_skipped(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Horizon Ltd", 1
    )
    async with session_factory() as first, session_factory() as second:
        await first.begin()
        await LedgerRepository(first).add_changes([_change(connection, "taken-first")])
        await second.begin()
        await LedgerRepository(second).add_changes([_change(connection, "committed-first")])
        await second.commit()
        ids = dict(
            (
                await second.execute(
                    select(LedgerChange.provider_id, LedgerChange.id).where(
                        LedgerChange.organization_id == org_id
                    )
                )
            ).all()
        )
        assert ids.keys() == {"committed-first"}  # the other one is not committed yet
        # A reader now must not move past the open transaction's row by serving the later id.
        page = await _page(client, key, org_id, None, 100)
        assert page["changes"] == []
        cursor = page["next_cursor"]
        await first.commit()

    served: list[str] = []

    async def both_served() -> bool:
        nonlocal cursor
        page = await _page(client, key, org_id, cursor, 100)
        served.extend(c["provider_id"] for c in page["changes"])
        cursor = page["next_cursor"]
        return len(served) >= 2

    await wait_for(both_served, timeout=30)
    # Commit order by transaction: the one that took the lower id first.
    assert served == ["taken-first", "committed-first"]
    async with session_factory() as session:
        stored = dict(
            (await session.execute(select(LedgerChange.provider_id, LedgerChange.id))).all()
        )
    assert stored["taken-first"] < stored["committed-first"]
