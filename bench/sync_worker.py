"""One sync in its own process, so the benchmark can measure its wall time, CPU and peak memory
apart from the sandbox's.

    python -m bench.sync_worker DATABASE_URL SANDBOX_URL TENANT_ID MODE [MONTHS_BACK]

MODE is `full`, `incremental` (reusing the database of an earlier run) or `accounts`. Prints one
JSON object: the ConnectionSyncResult plus `peak_rss_mb`, `cpu_s` (the whole process) and
`cpu_run_s` (the sync alone)."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from datetime import timedelta

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import select

from src.core.crypto import TokenCipher
from src.core.database import create_engine, create_session_factory, utcnow
from src.core.migrations import upgrade_database
from src.core.runtime import tune_garbage_collector
from src.core.settings import Settings
from src.domains.external_accounting.base.factory import IntegrationFactory
from src.domains.external_accounting.base.sync import AccountSyncRequest, InvoiceSyncRequest
from src.domains.external_accounting.connections.models import Connection, OAuthGrant, Provider
from src.domains.external_accounting.syncs.service import SyncsService
from src.domains.external_accounting.xero.auth.auth_manager import XeroAuthManager
from src.domains.external_accounting.xero.auth.identity_client import XeroIdentityClient
from src.domains.external_accounting.xero.data.accounting_client import TenantThrottle
from src.domains.external_accounting.xero.data.call_limiter import call_limiter_from_settings
from src.domains.organizations.models import Organization
from src.xero_sandbox.config import SandboxConfig

# Runs of one benchmark share a key (bench/run.py passes one) so a later run can decrypt tokens.
KEY = os.environ.get("BENCH_TOKEN_KEY") or Fernet.generate_key().decode()


def settings_for(database_url: str, sandbox_url: str) -> Settings:
    """Settings pointing at the benchmark's sandbox, pacing by the limits it enforces."""
    limits = httpx.get(f"{sandbox_url}/_sandbox/limits").json()
    config = SandboxConfig(
        limits_enabled=limits["enabled"],
        time_scale=limits["time_scale"],
        minute_limit=limits["minute_limit"],
        concurrent_limit=limits["concurrent_limit"],
        app_minute_limit=limits["app_minute_limit"],
    )
    return Settings(
        environment="test",
        database_url=database_url,
        token_encryption_keys=KEY,
        log_level="WARNING",
        **config.client_settings(sandbox_url),
    )


async def _connection(settings: Settings, sandbox_url: str, tenant_id: str) -> Connection:
    """The benchmark's one connection, created on first use with tokens minted by the sandbox."""
    factory = create_session_factory(create_engine(settings.database_url))
    async with factory() as session:
        existing = (await session.execute(select(Connection))).scalars().first()
        if existing is not None:
            return existing
        tokens = httpx.post(
            f"{sandbox_url}/_sandbox/tokens", json={"tenant_ids": [tenant_id]}
        ).json()
        cipher = TokenCipher.from_settings(settings)
        organization = Organization(name="Bench")
        session.add(organization)
        await session.flush()
        grant = OAuthGrant(
            organization_id=organization.id,
            access_token_encrypted=cipher.encrypt(tokens["access_token"]),
            refresh_token_encrypted=cipher.encrypt(tokens["refresh_token"]),
            access_token_expires_at=utcnow() + timedelta(seconds=tokens["expires_in"]),
        )
        session.add(grant)
        await session.flush()
        connection = Connection(
            organization_id=organization.id,
            tenant_id=tenant_id,
            tenant_name="Bench",
            grant_id=grant.id,
        )
        session.add(connection)
        await session.commit()
        return connection


async def main(
    database_url: str, sandbox_url: str, tenant_id: str, mode: str, months_back: int
) -> None:
    settings = settings_for(database_url, sandbox_url)
    if mode == "full":
        await asyncio.to_thread(upgrade_database, settings.database_url)
    connection = await _connection(settings, sandbox_url, tenant_id)
    engine = create_engine(settings.database_url)
    session_factory = create_session_factory(engine)
    limiter = call_limiter_from_settings(settings)
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_SELF)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120, connect=10)) as http:
        tokens = XeroAuthManager(
            settings,
            session_factory,
            XeroIdentityClient(http, settings),
            TokenCipher.from_settings(settings),
        )
        throttle = TenantThrottle(limiter)
        factory = IntegrationFactory(settings, session_factory, http, tokens, throttle)
        tune_garbage_collector()  # as `service_resources` does in the service's processes
        request: InvoiceSyncRequest | AccountSyncRequest
        if mode == "accounts":
            request = AccountSyncRequest(
                organization_id=connection.organization_id,
                provider=Provider.XERO,
                connection_id=connection.id,
            )
        else:
            request = InvoiceSyncRequest(
                organization_id=connection.organization_id,
                provider=Provider.XERO,
                connection_id=connection.id,
                incremental=mode == "incremental",
                months_back=months_back,
            )
        async with session_factory() as session:
            result = (await SyncsService(session, factory).sync(request)).connections[0]
    wall = time.perf_counter() - started
    await limiter.close()
    await engine.dispose()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        **json.loads(result.model_dump_json()),
        "wall_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        # The sync alone: without start-up (imports, migrations, the connection's set-up).
        "cpu_run_s": usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime,
        "paced_s": limiter.waited_s,
    }
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    arguments = sys.argv[1:]
    asyncio.run(
        main(
            arguments[0],
            arguments[1],
            arguments[2],
            arguments[3],
            int(arguments[4]) if len(arguments) > 4 else 12,
        )
    )
