"""What PostgreSQL itself costs in the sync benchmark: its CPU, and its own ingest limit.

`server_cpu_s()` is the CPU every PostgreSQL process has used so far, exited backends included
(the postmaster is charged with the CPU of the children it reaped), so the difference of two
readings is the server's CPU in between, whoever connected.

`copy_floor()` is the database's own ingest rate for what a full sync stored: the invoices and
their line items are read back already encoded (binary `COPY ... TO`), the tables emptied, and
the same bytes `COPY`'d into the same tables page by page, one transaction per 1,000 invoices as
the sync commits them. No decoding, mapping, change rows or round trips: only the server's work."""

from __future__ import annotations

import asyncio
import io
import time
from dataclasses import dataclass

import asyncpg
import psutil

PAGE = 1000


def _postmaster() -> psutil.Process:
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == "postgres":
            parent = process.parent()
            if parent is None or parent.name() != "postgres":
                return process
    raise RuntimeError("no PostgreSQL server process found on this machine")


def server_cpu_s() -> float:
    """CPU seconds used by the PostgreSQL server so far (every process, exited ones included)."""
    postmaster = _postmaster()
    own = postmaster.cpu_times()
    total = own.user + own.system + own.children_user + own.children_system
    for child in postmaster.children():
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue  # exited between the listing and now: counted in the postmaster's children
        total += times.user + times.system
    return float(total)


@dataclass
class CopyFloor:
    invoices: int
    line_items: int
    seconds: float

    @property
    def invoices_per_s(self) -> float:
        return self.invoices / self.seconds


async def _copy_floor(dsn: str) -> CopyFloor:
    connection = await asyncpg.connect(dsn)
    try:
        ids = [
            row[0]
            for row in await connection.fetch(
                "SELECT id FROM invoices ORDER BY provider_updated_at, id"
            )
        ]
        line_items = int(await connection.fetchval("SELECT count(*) FROM invoice_line_items"))
        pages: list[tuple[bytes, bytes]] = []
        for start in range(0, len(ids), PAGE):
            chunk = ids[start : start + PAGE]
            invoices, lines = io.BytesIO(), io.BytesIO()
            await connection.copy_from_query(
                "SELECT * FROM invoices WHERE id = ANY($1::uuid[])",
                chunk,
                output=invoices,
                format="binary",
            )
            await connection.copy_from_query(
                "SELECT * FROM invoice_line_items WHERE invoice_id = ANY($1::uuid[])",
                chunk,
                output=lines,
                format="binary",
            )
            pages.append((invoices.getvalue(), lines.getvalue()))
        await connection.execute("TRUNCATE invoices CASCADE")  # and their line items
        started = time.perf_counter()
        for invoices_bytes, lines_bytes in pages:
            async with connection.transaction():
                await connection.copy_to_table(
                    "invoices", source=io.BytesIO(invoices_bytes), format="binary"
                )
                await connection.copy_to_table(
                    "invoice_line_items", source=io.BytesIO(lines_bytes), format="binary"
                )
        seconds = time.perf_counter() - started
    finally:
        await connection.close()
    return CopyFloor(len(ids), line_items, seconds)


def copy_floor(dsn: str) -> CopyFloor:
    """The stored invoices and line items COPY'd back into the same tables (which it empties
    first and leaves holding the same rows)."""
    return asyncio.run(_copy_floor(dsn))
