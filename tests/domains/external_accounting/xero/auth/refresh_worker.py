"""A separate OS process asking for access tokens concurrently (used by the two-process test).

Usage: python -m tests.domains.external_accounting.xero.auth.refresh_worker CONNECTION_ID N
(settings from the environment: DATABASE_URL, TOKEN_ENCRYPTION_KEYS, XERO_*)."""

from __future__ import annotations

import asyncio
import sys
import uuid

from src.domains.external_accounting.connections.models import Connection
from tests.fixtures import worker_services


async def main(connection_id: uuid.UUID, callers: int) -> None:
    async with worker_services() as worker:
        async with worker.session_factory() as session:
            connection = await session.get(Connection, connection_id)
        assert connection is not None
        tokens = await asyncio.gather(
            *(worker.tokens.get_access_token(connection) for _ in range(callers))
        )
    sys.stdout.write("\n".join(tokens) + "\n")


if __name__ == "__main__":
    asyncio.run(main(uuid.UUID(sys.argv[1]), int(sys.argv[2])))
