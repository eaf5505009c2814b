"""A full invoice sync in its own OS process, for the test that kills it mid-sync.

Usage: python -m tests.domains.external_accounting.sync_worker_process CONNECTION_ID
(settings from the environment: DATABASE_URL, TOKEN_ENCRYPTION_KEYS, XERO_*)."""

from __future__ import annotations

import asyncio
import sys
import uuid

import httpx

from src.core.crypto import TokenCipher
from src.core.database import create_engine, create_session_factory
from src.core.settings import Settings
from src.domains.external_accounting.base.factory import IntegrationFactory
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.xero.auth.auth_manager import XeroAuthManager
from src.domains.external_accounting.xero.auth.identity_client import XeroIdentityClient
from src.domains.external_accounting.xero.data.accounting_client import TenantThrottle
from src.domains.external_accounting.xero.data.call_limiter import call_limiter_from_settings


async def main(connection_id: uuid.UUID) -> None:
    settings = Settings()
    engine = create_engine(settings.database_url)
    factory = create_session_factory(engine)
    async with httpx.AsyncClient() as http, factory() as session:
        connection = await session.get(Connection, connection_id)
        assert connection is not None
        tokens = XeroAuthManager(
            settings,
            factory,
            XeroIdentityClient(http, settings),
            TokenCipher.from_settings(settings),
        )
        throttle = TenantThrottle(call_limiter_from_settings(settings))
        service = IntegrationFactory(settings, factory, http, tokens, throttle)
        await service.get_sync_service(connection).sync_invoices(
            connection, incremental=False, invoice_types=("ACCPAY", "ACCREC"), months_back=120
        )
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(uuid.UUID(sys.argv[1])))
