"""What tests arrange, in one place: the Xero sandbox (its data, faults, limits, stats and clock),
the app under test, a connected organisation, and a sync.

The pytest fixtures in `conftest.py` are built from these; tests call them directly where they
need something a fixture does not give (a second app with other settings, a new tenant, a fault).
Child processes (`refresh_worker.py`, `sync_worker_process.py`) import `worker_services` from here.
Xero's ground truth and the comparison with it are in `ground_truth.py`."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple
from unittest.mock import patch
from urllib.parse import parse_qs, urlparse

import httpx
import procrastinate
from cryptography.fernet import Fernet
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from src.core.crypto import TokenCipher
from src.core.database import create_engine, create_session_factory
from src.core.jobs import run_jobs_in_process
from src.core.settings import Settings
from src.domains.external_accounting.base.factory import RESOURCES
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.xero.auth.auth_manager import XeroAuthManager
from src.domains.external_accounting.xero.auth.identity_client import XeroIdentityClient
from src.domains.external_accounting.xero.webhooks.deps import SIGNATURE_HEADER, signature_of
from src.main import create_app
from src.models_registry import metadata
from src.xero_sandbox.config import SandboxConfig
from src.xero_sandbox.server import RunningSandbox
from tests.factories import bearer, create_org_with_user

# -- the Xero sandbox ------------------------------------------------------------------------

# Small but varied data; limits on with Xero's real numbers, so tests that need throttling set
# them through the control API and the rest stay well under 60 calls a minute per tenant... which
# a busy test session would not, hence a generous minute limit here.
SANDBOX_CONFIG = SandboxConfig(
    tenants=2, invoices=300, seed=7, auto_approve=True, minute_limit=100_000, day_limit=1_000_000
)


def _control(sandbox: RunningSandbox, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """A call to the sandbox's control API that must succeed."""
    response = httpx.request(method, f"{sandbox.base_url}/_sandbox/{path}", **kwargs)
    response.raise_for_status()
    return response


def reset_sandbox(sandbox: RunningSandbox) -> None:
    """Back to the seeded data, with no tokens, faults or counters."""
    _control(sandbox, "POST", "reset")


def tenant_ids(sandbox: RunningSandbox) -> list[str]:
    """The sandbox's tenant ids, in creation order."""
    return [t["tenant_id"] for t in _control(sandbox, "GET", "tenants").json()]


def add_tenant(sandbox: RunningSandbox, name: str, invoices: int) -> str:
    """A new sandbox tenant of `invoices` generated invoices; returns its id."""
    created = _control(sandbox, "POST", "tenants", json={"name": name, "invoices": invoices})
    return str(created.json()["tenant_id"])


def invoices_url(sandbox: RunningSandbox, tenant_id: str) -> str:
    """The control API's invoices of a tenant (create, edit, pay, void... as a Xero user)."""
    return f"{sandbox.base_url}/_sandbox/tenants/{tenant_id}/invoices"


def mint_tokens(
    sandbox: RunningSandbox, tenants: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    """Tokens for the given tenants (default all) without the OAuth dance."""
    tokens: dict[str, Any] = _control(
        sandbox, "POST", "tokens", json={"tenant_ids": tenants, **extra}
    ).json()
    return tokens


def reads_at_xero(sandbox: RunningSandbox, access_token: str, tenant_id: str) -> bool:
    """Whether Xero lets this access token read the tenant's books."""
    response = httpx.get(
        f"{sandbox.base_url}/api.xro/2.0/Accounts",
        headers={"Authorization": f"Bearer {access_token}", "xero-tenant-id": tenant_id},
    )
    return response.status_code == 200


def sandbox_stats(sandbox: RunningSandbox) -> dict[str, Any]:
    """The sandbox's call counters: total, by path, tenant and status, and token calls."""
    stats: dict[str, Any] = _control(sandbox, "GET", "stats").json()
    return stats


def token_calls(sandbox: RunningSandbox) -> dict[str, int]:
    """The identity server's token calls by grant type (`refresh_token`, ...)."""
    calls: dict[str, int] = sandbox_stats(sandbox)["token_calls"]
    return calls


def reset_sandbox_stats(sandbox: RunningSandbox) -> None:
    """Zero the call counters."""
    _control(sandbox, "POST", "stats/reset")


def inject_faults(sandbox: RunningSandbox, **faults: Any) -> None:
    """Replace the accounting API's fault settings (`next_errors`, `rate_limit_burst`, ...)."""
    _control(sandbox, "PUT", "faults", json=faults)


def injected_faults(sandbox: RunningSandbox) -> dict[str, int]:
    """How many faults of each kind have struck."""
    injected: dict[str, int] = _control(sandbox, "GET", "faults").json()["injected"]
    return injected


def clear_faults(sandbox: RunningSandbox) -> None:
    """No more accounting API faults."""
    _control(sandbox, "DELETE", "faults")


def inject_token_faults(sandbox: RunningSandbox, **faults: Any) -> None:
    """Replace the identity server's fault settings (lost answers, latency, ...)."""
    _control(sandbox, "PUT", "token-faults", json=faults)


def injected_token_faults(sandbox: RunningSandbox) -> dict[str, int]:
    """How many identity server faults of each kind have struck."""
    injected: dict[str, int] = _control(sandbox, "GET", "token-faults").json()["injected"]
    return injected


def clear_token_faults(sandbox: RunningSandbox) -> None:
    """No more identity server faults."""
    _control(sandbox, "DELETE", "token-faults")


def recode_line(
    sandbox: RunningSandbox, tenant_id: str, invoice_id: str, position: int, account_code: str
) -> dict[str, Any]:
    """Xero's blind spot: re-code an invoice line without bumping UpdatedDateUTC."""
    path = f"tenants/{tenant_id}/invoices/{invoice_id}/lines/{position}/account-code"
    body: dict[str, Any] = _control(
        sandbox, "POST", path, json={"account_code": account_code}
    ).json()
    return body


def delete_account_at_xero(
    sandbox: RunningSandbox, tenant_id: str, account_id: str
) -> httpx.Response:
    """Delete an account outright in the sandbox, whatever it answers (409 when it is used)."""
    return httpx.delete(f"{sandbox.base_url}/_sandbox/tenants/{tenant_id}/accounts/{account_id}")


def tighten_limits(sandbox: RunningSandbox, **limits: Any) -> None:
    """Set the sandbox's rate limits (`minute_limit`, `time_scale` to compress time, ...)."""
    _control(sandbox, "PUT", "limits", json=limits)


class SandboxClock:
    """The clock the sandbox stamps every edit's `UpdatedDateUTC` with, moved by the test: real
    time plus an offset, or frozen at one instant (the sandbox runs in this process)."""

    def __init__(self) -> None:
        self.offset_ms = 0
        self.frozen_ms: int | None = None

    def __call__(self) -> int:
        if self.frozen_ms is not None:
            return self.frozen_ms
        return time.time_ns() // 1_000_000 + self.offset_ms

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass at once (more than Xero's one-second resolution apart)."""
        if self.frozen_ms is not None:
            self.frozen_ms += int(seconds * 1000)
        else:
            self.offset_ms += int(seconds * 1000)

    def freeze(self, moment: datetime) -> None:
        """Stamp every edit from now on at `moment` (plus the sandbox's 1 ms per repeat)."""
        self.frozen_ms = int(moment.timestamp() * 1000)


@contextmanager
def sandbox_clock() -> Iterator[SandboxClock]:
    """The sandbox's clock under the test's control for the length of the block."""
    clock = SandboxClock()
    with patch("src.xero_sandbox.store.now_ms", clock):
        yield clock


# -- the app under test ----------------------------------------------------------------------

TEST_ENCRYPTION_KEY = Fernet.generate_key().decode()


def sandbox_settings(database_url: str, base_url: str) -> Settings:
    """Settings that point every Xero URL at a sandbox."""
    return Settings(
        environment="test",
        database_url=database_url,
        token_encryption_keys=TEST_ENCRYPTION_KEY,
        public_base_url="http://testserver",
        xero_redirect_uri="http://localhost:8000/external-accounting/xero/callback",
        **SANDBOX_CONFIG.client_settings(base_url),
        xero_retry_base_delay_seconds=0.001,
        xero_retry_max_delay_seconds=0.01,
        # A test's worker runs only the syncs the test asks for: a scheduled one whose slot fell
        # within a test added a run it did not expect (the scheduler's tests call it directly).
        scheduled_syncs=False,
    )


def service_environment(
    settings: Settings, sandbox: RunningSandbox, **extra: str
) -> dict[str, str]:
    """The environment variables that give another process (a worker, the CLI) the tests'
    database, encryption key and sandbox."""
    return {
        "ENVIRONMENT": "test",
        "DATABASE_URL": settings.database_url,
        "TOKEN_ENCRYPTION_KEYS": settings.token_encryption_keys.get_secret_value(),
        "SCHEDULED_SYNCS": str(settings.scheduled_syncs).lower(),
        **{
            name.upper(): str(value)
            for name, value in SANDBOX_CONFIG.client_settings(sandbox.base_url).items()
        },
        **extra,
    }


async def empty_tables(engine: AsyncEngine) -> None:
    """Delete every row, children first."""
    async with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            await connection.execute(table.delete())


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The service with its lifespan running: start-up work done, shut down on leaving."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@asynccontextmanager
async def app_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client speaking to `app` in-process, with its own cookie jar (a browser's)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@dataclass
class WorkerServices:
    """What a worker process builds from its environment to reach the database and Xero."""

    settings: Settings
    session_factory: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    tokens: XeroAuthManager


@asynccontextmanager
async def worker_services() -> AsyncIterator[WorkerServices]:
    """A worker's services, configured from the environment (see `service_environment`)."""
    settings = Settings()
    engine = create_engine(settings.database_url)
    factory = create_session_factory(engine)
    try:
        async with httpx.AsyncClient() as http:
            tokens = XeroAuthManager(
                settings,
                factory,
                XeroIdentityClient(http, settings),
                TokenCipher.from_settings(settings),
            )
            yield WorkerServices(settings, factory, http, tokens)
    finally:
        await engine.dispose()


# -- connecting an organisation: our API → the sandbox's consent → our callback ---------------


async def start_connect(client: httpx.AsyncClient, key: str, org_id: object) -> str:
    """Our connect endpoint's redirect to Xero's authorize URL."""
    response = await client.get(
        "/external-accounting/xero/connect", params={"org_id": str(org_id)}, headers=bearer(key)
    )
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def approve(authorize_url: str, tenant_ids: list[str] | None = None) -> dict[str, str]:
    """Where Xero sends the browser back: auto-approve, or the consent form for some tenants."""
    async with httpx.AsyncClient() as browser:
        page = await browser.get(authorize_url)
        if tenant_ids is not None:
            assert page.status_code == 200
            fields = {k: v[0] for k, v in parse_qs(urlparse(authorize_url).query).items()}
            base = authorize_url.split("/identity/")[0]
            page = await browser.post(
                f"{base}/identity/connect/authorize/consent",
                data={**fields, "tenant_id": tenant_ids, "decision": "allow"},
            )
        assert page.status_code == 302, page.text
        query = parse_qs(urlparse(page.headers["location"]).query)
    return {k: v[0] for k, v in query.items()}


async def callback(
    client: httpx.AsyncClient, params: dict[str, str], **headers: str
) -> httpx.Response:
    """Our callback, as the browser would call it."""
    return await client.get("/external-accounting/xero/callback", params=params, headers=headers)


async def connect(
    client: httpx.AsyncClient, key: str, org_id: object, tenant_ids: list[str] | None = None
) -> dict[str, Any]:
    """The whole API flow (the callback carries the starting user's key); returns its JSON."""
    response = await connect_response(client, key, org_id, tenant_ids)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def connect_response(
    client: httpx.AsyncClient, key: str, org_id: object, tenant_ids: list[str] | None = None
) -> httpx.Response:
    """The whole API flow; returns the callback's response, whatever it is."""
    params = await approve(await start_connect(client, key, org_id), tenant_ids)
    return await callback(client, params, **bearer(key))


async def create_link(client: httpx.AsyncClient, key: str, org_id: object) -> dict[str, Any]:
    """A connect link (`POST /connect-sessions`), as an admin's API call."""
    response = await client.post(
        "/external-accounting/connect-sessions", params={"org_id": str(org_id)}, headers=bearer(key)
    )
    assert response.status_code == 201, response.text
    link: dict[str, Any] = response.json()
    return link


async def open_link(browser: httpx.AsyncClient, url: str) -> str:
    """A browser opening a connect link: it keeps our cookie and is sent to Xero's consent."""
    response = await browser.get(url)
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def browser_connect(
    browser: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    key: str,
    org_id: object,
    tenant_ids: list[str] | None = None,
) -> httpx.Response:
    """The whole browser flow: an admin's link, opened and consented in `browser`."""
    link = await create_link(admin, key, org_id)
    params = await approve(await open_link(browser, link["url"]), tenant_ids)
    return await callback(browser, params)


class ConnectedOrg(NamedTuple):
    """An organisation, its admin's API key, and its connections by tenant name."""

    org_id: uuid.UUID
    key: str
    connections: list[Connection]


async def connected_org(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> ConnectedOrg:
    """An organisation with an admin, connected to every sandbox tenant through OAuth."""
    organization, _, key = await create_org_with_user(session_factory)
    await connect(client, key, organization.id)
    async with session_factory() as session:
        connections = list(
            (await session.execute(select(Connection).order_by(Connection.tenant_name))).scalars()
        )
    return ConnectedOrg(organization.id, key, connections)


async def connected_to_new_tenant(
    client: httpx.AsyncClient,
    sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    name: str,
    invoices: int,
) -> tuple[uuid.UUID, str, Connection]:
    """A new sandbox tenant of `invoices` invoices, connected (with the others) through OAuth."""
    tenant = add_tenant(sandbox, name, invoices)
    org_id, key, connections = await connected_org(client, session_factory)
    return org_id, key, next(c for c in connections if c.tenant_id == tenant)


# -- syncing and comparing with Xero ---------------------------------------------------------


async def post_sync(
    client: httpx.AsyncClient, key: str, org_id: uuid.UUID, what: str = "invoices", **params: Any
) -> httpx.Response:
    """POST a sync, whatever it answers."""
    return await client.post(
        f"/external-accounting/{what}/sync",
        params={"org_id": str(org_id), **params},
        headers=bearer(key),
    )


async def sync(
    client: httpx.AsyncClient, key: str, org_id: uuid.UUID, what: str = "invoices", **params: Any
) -> dict[str, Any]:
    """POST a sync and return its SyncResult (asserting HTTP 200)."""
    response = await post_sync(client, key, org_id, what, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll `condition` until it holds (a concurrent sync reaching a point)."""
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


# -- background jobs -------------------------------------------------------------------------

ON_POSTGRES = os.environ.get("TEST_DATABASE_URL", "").startswith("postgres")
# Compressed job timings: a dead worker is noticed within about 2.7 s, retries come in 0.1 s.
FAST_JOBS: dict[str, Any] = {
    "job_heartbeat_seconds": 0.5,
    "job_stalled_after_seconds": 2.0,
    "job_stalled_check_seconds": 0.5,
    "job_poll_seconds": 0.2,
    "sync_retry_base_seconds": 0.1,
    "sync_retry_max_seconds": 0.2,
    "xero_retry_attempts": 2,
}
# The same timings as a worker's or the CLI's environment.
FAST_JOBS_ENVIRONMENT = {name.upper(): str(value) for name, value in FAST_JOBS.items()}


def fast_jobs(settings: Settings, **overrides: Any) -> Settings:
    """`settings` with the compressed job timings (and any other overrides)."""
    return settings.model_copy(update={**FAST_JOBS, **overrides})


async def empty_job_queue(job_app: procrastinate.App) -> None:
    """No job of an earlier test left in PostgreSQL's queue (the in-memory one starts empty)."""
    if ON_POSTGRES:
        await job_app.connector.execute_query_async(
            "TRUNCATE procrastinate_jobs, procrastinate_events, procrastinate_workers,"
            " procrastinate_periodic_defers CASCADE"
        )


@asynccontextmanager
async def background_service(
    settings: Settings, *, worker: bool = True
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The service with a worker running its jobs: the one `serve` runs on SQLite; on PostgreSQL
    a real Procrastinate worker on the app's queue and resources, in this process (tests that
    need worker processes start `ledgersync worker`)."""
    async with AsyncExitStack() as stack:
        app = await stack.enter_async_context(running_app(settings))
        await empty_job_queue(app.state.job_app)
        if ON_POSTGRES and worker:
            await stack.enter_async_context(
                run_jobs_in_process(
                    app.state.job_app, additional_context={RESOURCES: app.state.resources}
                )
            )
        client = await stack.enter_async_context(app_client(app))
        yield app, client


# -- Xero webhook deliveries, signed as Xero signs them -------------------------------------

WEBHOOK_KEY = "test-webhook-key-0123456789abcdef"


def xero_event(
    tenant_id: str,
    resource_id: str,
    at: str = "2026-12-02T00:44:09.923",
    category: str = "INVOICE",
    event_type: str = "UPDATE",
) -> dict[str, Any]:
    """One event as Xero writes it (no zone on `eventDateUtc`)."""
    return {
        "resourceUrl": f"https://api.xero.com/api.xro/2.0/Invoices/{resource_id}",
        "resourceId": resource_id,
        "eventDateUtc": at,
        "eventType": event_type,
        "eventCategory": category,
        "tenantId": tenant_id,
        "tenantType": "ORGANISATION",
    }


def xero_delivery(*events: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "events": list(events),
            "firstEventSequence": 1,
            "lastEventSequence": max(1, len(events)),
            "entropy": "FXNGWLCCGVANWHKILRUB",
        }
    ).encode()


async def post_webhook(
    client: httpx.AsyncClient,
    body: bytes,
    key: str | None = WEBHOOK_KEY,
    prefix: str = "/external-accounting",
) -> httpx.Response:
    """POST a delivery as Xero does: the raw bytes, signed with `key` (None: unsigned)."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers[SIGNATURE_HEADER] = signature_of(key, body)
    return await client.post(f"{prefix}/xero/webhooks", content=body, headers=headers)
