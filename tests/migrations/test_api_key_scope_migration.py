"""Migration 0018 on both databases: every existing API key is given the organisation it was
minted for (the one its user joined last before the key was made), a key of a user in no
organisation is dropped, and the way down keeps every key."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command

from src.core.database import UTCDateTime, create_engine
from src.core.migrations import alembic_config, upgrade_database

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ACME, GLOBEX = uuid.uuid4(), uuid.uuid4()
ANN, BOB, CAROL = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

organizations = sa.table(
    "organizations",
    sa.column("id", sa.Uuid()),
    sa.column("name"),
    sa.column("created_at", UTCDateTime()),
)
users = sa.table(
    "users", sa.column("id", sa.Uuid()), sa.column("email"), sa.column("created_at", UTCDateTime())
)
memberships = sa.table(
    "memberships",
    sa.column("id", sa.Uuid()),
    sa.column("organization_id", sa.Uuid()),
    sa.column("user_id", sa.Uuid()),
    sa.column("role"),
    sa.column("created_at", UTCDateTime()),
)
api_keys = sa.table(
    "api_keys",
    sa.column("id", sa.Uuid()),
    sa.column("user_id", sa.Uuid()),
    sa.column("prefix"),
    sa.column("key_hash"),
    sa.column("created_at", UTCDateTime()),
    sa.column("organization_id", sa.Uuid()),
    sa.column("expires_at", UTCDateTime()),
)


# Ann joined Acme, then Globex; Bob joined Globex.
MEMBERSHIPS = ((ACME, ANN, 10), (GLOBEX, ANN, 20), (GLOBEX, BOB, 30))


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _seed(url: str) -> None:
    """Keys as `users create` made them before 0018: membership first, then the key."""

    async def seed() -> None:
        engine = create_engine(url)
        async with engine.begin() as connection:
            await connection.execute(
                sa.insert(organizations),
                [
                    {"id": ACME, "name": "Acme", "created_at": _at(0)},
                    {"id": GLOBEX, "name": "Globex", "created_at": _at(0)},
                ],
            )
            await connection.execute(
                sa.insert(users),
                [
                    {"id": user, "email": f"{user.hex}@x.test", "created_at": _at(0)}
                    for user in (ANN, BOB, CAROL)
                ],
            )
            await connection.execute(
                sa.insert(memberships),
                [
                    {"id": uuid.uuid4(), "organization_id": org, "user_id": user, "role": "admin",
                     "created_at": _at(minutes)}
                    for org, user, minutes in MEMBERSHIPS
                ],
            )  # fmt: skip
            await connection.execute(
                sa.insert(api_keys),
                [
                    {"id": uuid.uuid4(), "user_id": user, "prefix": prefix, "key_hash": "h",
                     "created_at": _at(minutes)}
                    for user, prefix, minutes in (
                        (ANN, "ann-acme", 10),  # minted with the Acme membership
                        (ANN, "ann-globex", 20),  # minted when Ann joined Globex
                        (BOB, "bob-early", 1),  # older than Bob's one membership (a clock)
                        (CAROL, "carol", 5),  # Carol belongs to no organisation
                    )
                ],
            )  # fmt: skip
        await engine.dispose()

    asyncio.run(seed())


def _keys(url: str, *, scoped: bool) -> dict[str, tuple[uuid.UUID | None, datetime | None]]:
    async def read() -> dict[str, tuple[uuid.UUID | None, datetime | None]]:
        engine = create_engine(url)
        columns = [api_keys.c.prefix]
        if scoped:
            columns += [api_keys.c.organization_id, api_keys.c.expires_at]
        async with engine.connect() as connection:
            rows = (await connection.execute(sa.select(*columns))).all()
        await engine.dispose()
        return {row[0]: (row[1], row[2]) if scoped else (None, None) for row in rows}

    return asyncio.run(read())


def test_existing_keys_get_the_organisation_they_were_minted_for(scratch_database: str) -> None:
    url = scratch_database
    upgrade_database(url, "0017")
    _seed(url)

    upgrade_database(url, "0018")
    assert _keys(url, scoped=True) == {
        "ann-acme": (ACME, None),
        "ann-globex": (GLOBEX, None),
        "bob-early": (GLOBEX, None),
    }

    command.downgrade(alembic_config(url), "0017")
    assert set(_keys(url, scoped=False)) == {"ann-acme", "ann-globex", "bob-early"}
