"""The accounts sync writes, and records, only what changed: an unchanged chart is 0 updated and
no change rows; a changed account is one `updated` change with old and new; an account written
with status DELETED (the reconciliation's path) is a `deleted` change in the feed."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import msgspec
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.database import JsonText, utcnow
from src.domains.external_accounting.ledger.models import Account, LedgerChange
from src.domains.external_accounting.ledger.repository import LedgerRepository
from src.domains.external_accounting.ledger.rows import AccountRow
from src.xero_sandbox.server import RunningSandbox
from tests.factories import bearer
from tests.fixtures import connected_to_new_tenant, sync


async def _changes(
    session_factory: async_sessionmaker[AsyncSession], **where: Any
) -> list[LedgerChange]:
    async with session_factory() as session:
        query = select(LedgerChange).filter_by(record_type="account", **where)
        return list((await session.execute(query.order_by(LedgerChange.id))).scalars())


async def _feed(client: httpx.AsyncClient, key: str, org_id: uuid.UUID) -> list[dict[str, Any]]:
    response = await client.get(
        "/external-accounting/changes",
        params={"org_id": str(org_id), "limit": "1000"},
        headers=bearer(key),
    )
    assert response.status_code == 200, response.text
    changes: list[dict[str, Any]] = response.json()["changes"]
    return changes


async def test_an_unchanged_chart_is_not_updated_and_records_nothing(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Chart Ltd", 1
    )
    first = await sync(client, key, org_id, "accounts", connection_id=str(connection.id))
    created = first["created"]
    assert created > 10
    assert len(await _changes(session_factory, kind="created")) == created
    async with session_factory() as session:
        before = (await session.execute(select(Account.id, Account.synced_at))).all()
    again = await sync(client, key, org_id, "accounts", connection_id=str(connection.id))
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, created)
    assert len(await _changes(session_factory)) == created
    async with session_factory() as session:
        after = (await session.execute(select(Account.id, Account.synced_at))).all()
    assert sorted(after) == sorted(before)  # not even rewritten


async def test_a_changed_account_is_one_updated_change_with_old_and_new(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Renamed Ltd", 1
    )
    await sync(client, key, org_id, "accounts", connection_id=str(connection.id))
    async with session_factory() as session:
        account = (
            await session.execute(
                select(Account).where(Account.connection_id == connection.id).limit(1)
            )
        ).scalar_one()
        xero_name = account.name
        # Our copy no longer says what Xero says: the next sync must correct it, and say so.
        await session.execute(
            update(Account).where(Account.id == account.id).values(name="Stale name")
        )
        await session.commit()
    result = await sync(client, key, org_id, "accounts", connection_id=str(connection.id))
    assert result["updated"] == 1
    (change,) = await _changes(session_factory, kind="updated")
    assert change.record_id == account.id
    assert change.version == 2
    assert change.changes == {"name": {"old": "Stale name", "new": xero_name}}
    assert change.run_id == uuid.UUID(result["sync_run_id"])


async def test_an_account_written_as_deleted_is_a_deleted_change(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connection = await connected_to_new_tenant(
        client, fresh_sandbox, session_factory, "Gone Ltd", 1
    )
    await sync(client, key, org_id, "accounts", connection_id=str(connection.id))
    async with session_factory() as session:
        account = (
            (
                await session.execute(
                    select(Account).where(
                        Account.connection_id == connection.id, Account.status == "ACTIVE"
                    )
                )
            )
            .scalars()
            .first()
        )
    assert account is not None
    row = AccountRow(
        **{
            name: getattr(account, name)
            for name in AccountRow.__struct_fields__
            if name not in ("raw", "synced_at")
        },
        raw=JsonText(msgspec.json.encode(account.raw)),
        synced_at=utcnow(),
    )
    async with session_factory() as session, session.begin():
        writes = await LedgerRepository(session).upsert_accounts(
            connection.id,
            [msgspec.structs.replace(row, status="DELETED")],
            run_id=None,
            seen_at=utcnow(),
        )
    assert (writes.created, writes.updated) == (0, 1)
    (change,) = await _changes(session_factory, kind="deleted")
    assert change.changes == {"status": {"old": "ACTIVE", "new": "DELETED"}}
    feed = await _feed(client, key, org_id)
    assert feed[-1]["kind"] == "deleted"
    assert feed[-1]["record_type"] == "account"
    assert feed[-1]["record_id"] == str(account.id)
    assert feed[-1]["changes"]["status"] == {"old": "ACTIVE", "new": "DELETED"}
    async with session_factory() as session:
        count = await session.execute(
            select(func.count()).select_from(Account).where(Account.status == "DELETED")
        )
        assert count.scalar_one() >= 1
