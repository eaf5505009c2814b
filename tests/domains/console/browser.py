"""What the console's browser tests stand on: the service served over real HTTP (uvicorn, in a
thread of this process, with a worker for its background syncs), a Xero sandbox that shows its
consent page, and Chromium driven by Playwright (Debian's `/usr/bin/chromium`: scripts/test.sh
installs it; Playwright's own browser download is never used)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from src.core.jobs import run_jobs_in_process
from src.core.settings import Settings
from src.domains.external_accounting.base.factory import RESOURCES
from src.main import create_app
from src.xero_sandbox.config import SandboxConfig
from src.xero_sandbox.server import free_port
from tests.fixtures import ON_POSTGRES, TEST_ENCRYPTION_KEY, empty_job_queue

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = (
    ROOT / "var" / "screenshots" / ("console-postgresql" if ON_POSTGRES else "console-sqlite")
)

# Two organisations of a few pages each; the consent page is shown (no auto-approve), so the
# browser ticks the organisations and presses "Allow access" as a person would.
CONSOLE_SANDBOX = SandboxConfig(
    tenants=2,
    invoices=240,
    seed=15,
    auto_approve=False,
    minute_limit=100_000,
    day_limit=1_000_000,
)


def console_settings(database_url: str, sandbox_url: str, port: int) -> Settings:
    """The service at http://127.0.0.1:<port>, Xero at the sandbox: the connect link, the
    callback and the console share one host, as the cookie binding needs."""
    base = f"http://127.0.0.1:{port}"
    return Settings(
        environment="test",
        database_url=database_url,
        token_encryption_keys=TEST_ENCRYPTION_KEY,
        public_base_url=base,
        xero_redirect_uri=f"{base}/external-accounting/xero/callback",
        **CONSOLE_SANDBOX.client_settings(sandbox_url),
        xero_retry_base_delay_seconds=0.001,
        xero_retry_max_delay_seconds=0.01,
        maintenance_interval_seconds=0,
        outbound_webhook_tick_seconds=1,
        # The test counts the runs and sync.finished deliveries it caused: a scheduled sync of
        # the connection it never syncs by hand (its slot falls in the test one time in ~20)
        # added a third run and failed it once in CI.
        scheduled_syncs=False,
    )


class ServedApp:
    """The service served by uvicorn in a daemon thread, its lifespan (and, on PostgreSQL, a
    worker for its job queue) running in that thread's loop."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.settings = settings
        self.base_url = f"http://127.0.0.1:{port}"
        self.app = create_app(settings)
        lifespan = self.app.router.lifespan_context

        @asynccontextmanager
        async def with_worker(app: FastAPI) -> AsyncIterator[Any]:
            async with lifespan(app) as state:
                await empty_job_queue(app.state.job_app)
                if not ON_POSTGRES:  # `serve` on SQLite runs its jobs itself
                    yield state
                    return
                async with run_jobs_in_process(
                    app.state.job_app, additional_context={RESOURCES: app.state.resources}
                ):
                    yield state

        self.app.router.lifespan_context = with_worker
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning")
        )
        self._thread = threading.Thread(target=self._serve, name="console-app", daemon=True)

    def _serve(self) -> None:
        asyncio.run(self._server.serve())

    async def start(self) -> None:
        self._thread.start()
        async with httpx.AsyncClient() as client:
            for _ in range(600):
                try:
                    if (await client.get(f"{self.base_url}/healthz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
        raise TimeoutError(f"the service at {self.base_url} did not start")

    async def stop(self) -> None:
        self._server.should_exit = True
        await asyncio.to_thread(self._thread.join, 15)


def app_port() -> int:
    return free_port()
