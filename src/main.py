"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from src.core.crypto import TokenCipher
from src.core.deps import refuse_control_characters
from src.core.docs_pages import install_docs
from src.core.exception_handlers import install_exception_handlers
from src.core.jobs import serve_jobs
from src.core.logging import configure_logging
from src.core.openapi import install_openapi
from src.core.request_id import RequestIdMiddleware
from src.core.settings import Settings, get_settings
from src.domains.console.routes import PACKAGE as CONSOLE_PACKAGE
from src.domains.console.routes import STATIC_PATH as CONSOLE_STATIC_PATH
from src.domains.console.routes import router as console_router
from src.domains.external_accounting.base.factory import RESOURCES, service_resources
from src.domains.external_accounting.routes import PREFIXES as external_accounting_prefixes
from src.domains.external_accounting.routes import router as external_accounting_router
from src.domains.external_accounting.syncs.service import SyncsService
from src.domains.external_accounting.xero.auth.revocations import maintenance_forever
from src.domains.health.routes import router as health_router
from src.domains.metrics.routes import router as metrics_router

API_DESCRIPTION = (
    "Send an API key as `Authorization: Bearer <key>`. Every error is one JSON shape, "
    '`ErrorBody` (`{"error": code, "detail": sentence}`, plus fields some codes add), with '
    "a 4xx for anything the caller can fix; each operation lists the statuses and codes it can "
    "answer. Every route is served under `/external-accounting` and `/integrations`."
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service: one engine, one session factory and one HTTP client per process."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The job queue inside the resources: leaving it lets jobs in flight finish before the
        # call limiter, the HTTP client and the engine close.
        async with (
            service_resources(settings, cipher) as resources,
            serve_jobs(settings, additional_context={RESOURCES: resources}) as job_app,
        ):
            app.state.resources = resources
            app.state.engine = resources.engine
            app.state.session_factory = resources.session_factory
            app.state.http_client = resources.http
            app.state.xero_throttle = resources.xero_throttle
            app.state.xero_auth_manager = resources.xero_auth_manager
            app.state.job_app = job_app
            if settings.is_sqlite:
                # The in-memory queue did not outlive the previous process: its unfinished
                # background runs are queued again, to resume from their checkpoints.
                async with resources.session_factory() as session:
                    await SyncsService(session, resources.factory).requeue_interrupted(job_app)
            # Retries revocations Xero did not confirm and purges expired OAuth states.
            maintenance = (
                asyncio.create_task(
                    maintenance_forever(
                        resources.session_factory, settings, cipher, resources.identity
                    )
                )
                if settings.maintenance_interval_seconds > 0
                else None
            )
            yield
            if maintenance is not None:
                maintenance.cancel()
                with suppress(asyncio.CancelledError):
                    await maintenance

    configure_logging(settings.log_level, json_lines=settings.log_json)
    settings.require_service_settings()  # refuses to start without XERO_CLIENT_ID in production
    cipher = TokenCipher.from_settings(settings)  # refuses to start without a key in production
    app = FastAPI(
        title="ledgersync",
        version="0.1.0",
        summary="Keeps a customer's Xero invoices and chart of accounts in our SQL database.",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # install_docs serves both pages from packaged assets
        redoc_url=None,
        # Every parameter of every route, before any handler sees it (PostgreSQL refuses NUL).
        dependencies=[Depends(refuse_control_characters)],
    )
    app.state.settings = settings
    app.state.token_cipher = cipher
    install_exception_handlers(app)
    install_openapi(app)
    install_docs(app)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health_router)
    if settings.metrics_enabled:  # off: /metrics is not there at all (a plain 404)
        app.include_router(metrics_router)
    for prefix in external_accounting_prefixes:
        app.include_router(external_accounting_router, prefix=prefix)
    # The console (/console): pages for people, on the same services; its assets are packaged.
    app.mount(
        CONSOLE_STATIC_PATH,
        StaticFiles(directory=CONSOLE_PACKAGE / "static"),
        name="console-static",
    )
    app.include_router(console_router)
    return app
