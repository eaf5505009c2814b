"""The async engine, sessions and the declarative base shared by every domain."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, cast

import orjson
from sqlalchemy import DateTime, MetaData, Numeric, Text, event, literal
from sqlalchemy.engine import CursorResult, Dialect, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations name constraints predictably."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _as_utc(value: datetime) -> datetime:
    """An aware datetime in UTC; a naive one is refused (it is a bug)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend.

    PostgreSQL keeps `timestamptz`; SQLite stores naive text, so values are normalised to UTC on
    the way in and re-tagged as UTC on the way out. Naive datetimes are refused: they are bugs.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = _as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Any:
        """On SQLite, `process_bind_param` and SQLite's DATETIME storage format in one closure:
        the same text (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC), without the format's dictionary per
        value, which made timestamps ~9% of a SQLite sync's samples (bench/README.md)."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            return _as_utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class ExactDecimal(TypeDecorator[Decimal]):
    """A fixed-point decimal that keeps every digit on every backend.

    PostgreSQL keeps `numeric(precision, scale)`. SQLite has no decimal type: its NUMERIC affinity
    turns number-looking text into a float (15 significant digits, so `99999999999999.9999` read
    back as `100000000000000`), hence the exact digits live in a TEXT column there, rounded to the
    scale and refused beyond the precision as PostgreSQL does. Nothing compares or sorts these
    columns in SQL (text would compare wrongly on SQLite).
    """

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int) -> None:
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.precision = precision
        self.scale = scale
        self._quantum = Decimal(1).scaleb(-scale)
        self._limit = Decimal(10) ** (precision - scale)

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Text())
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def bind_processor(self, dialect: Dialect) -> Any:
        """On SQLite, a closure on the sync's hot path (half a million values per 100k invoices):
        round to the scale as PostgreSQL does, refuse what exceeds the precision, write
        fixed-point text."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        quantum, limit, precision, scale = self._quantum, self._limit, self.precision, self.scale
        zero = format(quantum * 0, "f")  # `0.0000`: PostgreSQL has no negative zero
        # Up to 6 places `str` never uses an exponent (`1E-10`) and is the faster of the two.
        text = str if scale <= 6 else (lambda exact: format(exact, "f"))

        def process(value: Any) -> str | None:
            if value is None:
                return None
            try:
                exact = (value if type(value) is Decimal else Decimal(value)).quantize(
                    quantum, ROUND_HALF_UP
                )
            except InvalidOperation:  # NaN, infinity
                exact = limit
            if not -limit < exact < limit:
                raise ValueError(f"{value} does not fit numeric({precision}, {scale})")
            return text(exact) if exact else zero

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None or isinstance(value, Decimal):
            return value
        # SQLite: the exact text.
        return Decimal(value)


def rows_matched(result: Any) -> int:
    """Rows an UPDATE or DELETE matched (`execute` returns a CursorResult for DML)."""
    return int(cast(CursorResult[Any], result).rowcount)


# PostgreSQL's "deadlock detected" and "could not serialize access": the server rolled the whole
# transaction back, so running it again from the start is safe and usually succeeds.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def is_retryable_conflict(error: BaseException) -> bool:
    """Whether `error` is a transaction that lost a lock conflict and may simply be retried."""
    return isinstance(error, DBAPIError) and (
        getattr(error.orig, "sqlstate", None) in RETRYABLE_SQLSTATES
    )


def utcnow() -> datetime:
    """The current instant, timezone-aware."""
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    """A fresh primary key."""
    return uuid.uuid4()


class JsonText(bytes):
    """A JSON document that is already text (a record's verbatim bytes from an API response):
    JSON columns store it as it is, so its numbers keep their exact digits."""


def _json_default(value: Any) -> Any:
    if isinstance(value, JsonText):
        return orjson.Fragment(bytes(value))
    if isinstance(value, Decimal):
        # Written as the exact number text (`40.00` stays `40.00`), never through float.
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_dumps(value: Any) -> str:
    """JSON text for JSON columns: exact decimals, aware datetimes as ISO 8601."""
    return orjson.dumps(value, default=_json_default).decode()


def json_loads(text: str | bytes) -> Any:
    """JSON columns read back with numbers as Decimal."""
    return json.loads(text, parse_float=Decimal)


def inline_constant(value: str) -> Any:
    """A constant written into the statement rather than bound: a partial index serves a query
    only where the planner can see that the query's condition implies the index's, and a bound
    value hides it (from SQLite's planner, and from PostgreSQL's generic plans)."""
    return literal(value, literal_execute=True)


def create_engine(database_url: str, *, echo: bool = False) -> AsyncEngine:
    """An async engine; for SQLite the file's folder is created and WAL + foreign keys enabled."""
    url = make_url(database_url)
    kwargs: dict[str, Any] = {
        "echo": echo,
        # Bound parameters are customer data (invoices, contacts) and secrets (token
        # ciphertexts, state hashes): never in error messages or the echo log.
        "hide_parameters": True,
        "json_serializer": json_dumps,
        "json_deserializer": json_loads,
    }
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        if url.get_driver_name() == "asyncpg":
            # Our statements are short index lookups; a large table makes the planner's cost
            # estimate cross jit_above_cost, and compiling the plan then took 770 of the 990 ms
            # the scheduler's query took over a day of runs (bench/fleet.py).
            kwargs["connect_args"] = {"server_settings": {"jit": "off"}}
    engine = create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run during a sync's writes; busy_timeout waits for the writer lock
    # instead of failing at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """Commit on success, roll back on error: the transaction boundary of a request."""
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
