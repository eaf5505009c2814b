"""A separate OS process asking for access tokens concurrently (used by the two-process test).

Usage: python -m tests.domains.external_accounting.refresh_worker CONNECTION_ID N
(settings from the environment: DATABASE_URL, TOKEN_ENCRYPTION_KEYS, XERO_*)."""

from __future__ import annotations

import asyncio
import sys
import uuid

import httpx

from src.core.crypto import TokenCipher
from src.core.database import create_engine, create_session_factory
from src.core.settings import Settings
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.xero.auth.auth_manager import XeroAuthManager
from src.domains.external_accounting.xero.auth.identity_client import XeroIdentityClient


async def main(connection_id: uuid.UUID, callers: int) -> None:
    settings = Settings()
    engine = create_engine(settings.database_url)
    factory = create_session_factory(engine)
    async with httpx.AsyncClient() as http:
        manager = XeroAuthManager(
            settings,
            factory,
            XeroIdentityClient(http, settings),
            TokenCipher.from_settings(settings),
        )
        async with factory() as session:
            connection = await session.get(Connection, connection_id)
        assert connection is not None
        tokens = await asyncio.gather(
            *(manager.get_access_token(connection) for _ in range(callers))
        )
    await engine.dispose()
    sys.stdout.write("\n".join(tokens) + "\n")


if __name__ == "__main__":
    asyncio.run(main(uuid.UUID(sys.argv[1]), int(sys.argv[2])))
