"""Migration 0024 on both databases: the ledger's tables refer to (connection, organisation) with
one foreign key. No row is lost on the way up or down (on SQLite each table is copied, and the
copy's drop of the original must not cascade to the rows referring to it), SQLite's change ids
are never reused, a row naming another organisation than its connection's is refused, and an
organisation's deletion still takes its ledger with it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.exc import IntegrityError

from src.core.database import UTCDateTime, create_engine
from src.core.migrations import alembic_config, upgrade_database

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ACME, GLOBEX = uuid.uuid4(), uuid.uuid4()
ACME_XERO, GLOBEX_XERO = uuid.uuid4(), uuid.uuid4()
INVOICE = uuid.uuid4()
LEDGER = ("invoices", "invoice_line_items", "accounts", "ledger_changes")


def _table(table_name: str, /, *uuids: str, **others: Any) -> sa.TableClause:
    columns = [sa.column(column, sa.Uuid()) for column in uuids]
    columns += [sa.column(column, type_) for column, type_ in others.items()]
    return sa.table(table_name, *columns)


organizations = _table("organizations", "id", name=sa.String(), created_at=UTCDateTime())
connections = _table(
    "connections",
    "id",
    "organization_id",
    provider=sa.String(),
    tenant_id=sa.String(),
    tenant_name=sa.String(),
    tenant_type=sa.String(),
    status=sa.String(),
    connected_at=UTCDateTime(),
    updated_at=UTCDateTime(),
)
invoices = _table(
    "invoices",
    "id",
    "organization_id",
    "connection_id",
    provider_id=sa.String(),
    type=sa.String(),
    status=sa.String(),
    provider_updated_at=UTCDateTime(),
    raw=sa.JSON(),
    synced_at=UTCDateTime(),
)
line_items = _table("invoice_line_items", "invoice_id", position=sa.Integer(), tracking=sa.JSON())
accounts = _table(
    "accounts",
    "id",
    "organization_id",
    "connection_id",
    provider_id=sa.String(),
    raw=sa.JSON(),
    synced_at=UTCDateTime(),
)
changes = _table(
    "ledger_changes",
    "organization_id",
    "connection_id",
    "record_id",
    id=sa.BigInteger(),
    record_type=sa.String(),
    provider_id=sa.String(),
    kind=sa.String(),
    version=sa.Integer(),
    seen_at=UTCDateTime(),
    changes=sa.JSON(),
)


def _on(url: str, *statements: Any) -> list[Any]:
    """Run the statements in one transaction (foreign keys on, as the service runs); the
    scalar of each that returns rows."""

    async def run() -> list[Any]:
        engine = create_engine(url)
        results = []
        try:
            async with engine.begin() as connection:
                for statement in statements:
                    result = await connection.execute(statement)
                    results.append(result.scalar() if result.returns_rows else None)
        finally:
            await engine.dispose()
        return results

    return asyncio.run(run())


def _change(organization: uuid.UUID, connection: uuid.UUID) -> sa.Insert:
    return sa.insert(changes).values(
        organization_id=organization,
        connection_id=connection,
        record_id=INVOICE,
        record_type="invoice",
        provider_id="inv-1",
        kind="created",
        version=1,
        seen_at=T0,
        changes={},
    )


def _seed(url: str) -> None:
    """Two organisations, each with a connection; Acme's with an invoice, its line, an account
    and three changes, the last of which was deleted (SQLite's AUTOINCREMENT remembers it)."""
    _on(
        url,
        sa.insert(organizations).values(
            [{"id": org, "name": str(org), "created_at": T0} for org in (ACME, GLOBEX)]
        ),
        sa.insert(connections).values(
            [
                {
                    "id": connection,
                    "organization_id": org,
                    "provider": "xero",
                    "tenant_id": str(connection),
                    "tenant_name": "t",
                    "tenant_type": "ORGANISATION",
                    "status": "active",
                    "connected_at": T0,
                    "updated_at": T0,
                }
                for connection, org in ((ACME_XERO, ACME), (GLOBEX_XERO, GLOBEX))
            ]
        ),  # fmt: skip
        sa.insert(invoices).values(
            id=INVOICE,
            organization_id=ACME,
            connection_id=ACME_XERO,
            provider_id="inv-1",
            type="ACCREC",
            status="AUTHORISED",
            provider_updated_at=T0,
            raw={},
            synced_at=T0,
        ),  # fmt: skip
        sa.insert(line_items).values(invoice_id=INVOICE, position=0, tracking=[]),
        sa.insert(accounts).values(
            id=uuid.uuid4(),
            organization_id=ACME,
            connection_id=ACME_XERO,
            provider_id="acc-1",
            raw={},
            synced_at=T0,
        ),  # fmt: skip
        _change(ACME, ACME_XERO),
        _change(ACME, ACME_XERO),
        _change(ACME, ACME_XERO),
        sa.delete(changes).where(
            changes.c.id == sa.select(sa.func.max(changes.c.id)).scalar_subquery()
        ),
    )


def _counts(url: str) -> dict[str, int]:
    names = ("organizations", "connections", *LEDGER)
    counted = _on(url, *(sa.text(f"SELECT count(*) FROM {name}") for name in names))
    return dict(zip(names, counted, strict=True))


def _newest_change_id(url: str) -> int:
    [_, newest] = _on(url, _change(ACME, ACME_XERO), sa.select(sa.func.max(changes.c.id)))
    return int(newest)


SEEDED = {
    "organizations": 2,
    "connections": 2,
    "invoices": 1,
    "invoice_line_items": 1,
    "accounts": 1,
    "ledger_changes": 2,
}


def test_one_key_per_row_keeps_every_row_and_refuses_a_mismatched_organisation(
    scratch_database: str,
) -> None:
    url = scratch_database
    upgrade_database(url, "0023")
    _seed(url)
    [highest_before] = _on(url, sa.select(sa.func.max(changes.c.id)))

    upgrade_database(url, "0024")
    assert _counts(url) == SEEDED
    # Never an id given before (the third change's was, and it was deleted).
    assert _newest_change_id(url) > highest_before + 1
    with pytest.raises(IntegrityError):  # Acme's connection, Globex's organisation
        _on(url, _change(GLOBEX, ACME_XERO))
    with pytest.raises(IntegrityError):
        _on(
            url,
            sa.insert(accounts).values(
                id=uuid.uuid4(), organization_id=GLOBEX, connection_id=ACME_XERO,
                provider_id="acc-2", raw={}, synced_at=T0,
            ),
        )  # fmt: skip

    command.downgrade(alembic_config(url), "0023")
    assert _counts(url) == SEEDED | {"ledger_changes": 3}

    upgrade_database(url, "0024")
    assert _counts(url) == SEEDED | {"ledger_changes": 3}
    _on(url, sa.delete(organizations).where(organizations.c.id == ACME))
    assert _counts(url) == {"organizations": 1, "connections": 1} | dict.fromkeys(LEDGER, 0)
