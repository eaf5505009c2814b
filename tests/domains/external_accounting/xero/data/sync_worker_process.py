"""A full invoice sync in its own OS process, for the test that kills it mid-sync.

Usage: python -m tests.domains.external_accounting.xero.data.sync_worker_process CONNECTION_ID
(settings from the environment: DATABASE_URL, TOKEN_ENCRYPTION_KEYS, XERO_*)."""

from __future__ import annotations

import asyncio
import sys
import uuid

from src.domains.external_accounting.base.factory import IntegrationFactory
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.xero.data.accounting_client import TenantThrottle
from src.domains.external_accounting.xero.data.call_limiter import call_limiter_from_settings
from tests.fixtures import worker_services


async def main(connection_id: uuid.UUID) -> None:
    async with worker_services() as worker, worker.session_factory() as session:
        connection = await session.get(Connection, connection_id)
        assert connection is not None
        throttle = TenantThrottle(call_limiter_from_settings(worker.settings))
        service = IntegrationFactory(
            worker.settings, worker.session_factory, worker.http, worker.tokens, throttle
        )
        await service.get_sync_service(connection).sync_invoices(
            connection, incremental=False, invoice_types=("ACCPAY", "ACCREC"), months_back=120
        )


if __name__ == "__main__":
    asyncio.run(main(uuid.UUID(sys.argv[1])))
