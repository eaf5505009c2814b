"""The sandbox application: Xero's identity and accounting APIs at Xero's own paths."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from src.xero_sandbox import (
    accounting,
    blind_spots,
    control,
    credit_notes,
    data_control,
    identity,
    token_faults,
    webhook_control,
)
from src.xero_sandbox.config import SandboxConfig
from src.xero_sandbox.guard import PREFIX, AccountingGuard
from src.xero_sandbox.paths import XeroPathCase
from src.xero_sandbox.responses import JsonResponse
from src.xero_sandbox.runtime import SandboxRuntime
from src.xero_sandbox.store import SandboxStore


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    # Deliveries in flight stop with the server; their client closes with it.
    runtime: SandboxRuntime = app.state.sandbox
    await runtime.webhooks.aclose()


def create_sandbox_app(
    config: SandboxConfig | None = None, store: SandboxStore | None = None
) -> FastAPI:
    """A sandbox with data generated from `config` (or the given store)."""
    config = config or SandboxConfig()
    app = FastAPI(title="Xero sandbox (ledgersync)", version="1.0", lifespan=_lifespan)
    app.state.sandbox = SandboxRuntime.build(config, store)
    xero_routers = [accounting.router, credit_notes.accounting_router]
    app.include_router(identity.router)
    for router in xero_routers:
        app.include_router(router, prefix=PREFIX)
    app.include_router(control.router, prefix="/_sandbox")
    app.include_router(data_control.router, prefix="/_sandbox")
    app.include_router(credit_notes.control_router, prefix="/_sandbox")
    app.include_router(webhook_control.router, prefix="/_sandbox")
    app.include_router(blind_spots.router, prefix="/_sandbox")
    app.include_router(token_faults.router, prefix="/_sandbox")
    app.add_middleware(AccountingGuard, runtime_holder=app.state)
    # Added last, so it runs first: the guard must see Xero's path in the route's spelling.
    xero_paths = [r.path for r in identity.router.routes if isinstance(r, APIRoute)] + [
        PREFIX + r.path for router in xero_routers for r in router.routes if isinstance(r, APIRoute)
    ]
    app.add_middleware(XeroPathCase, route_paths=xero_paths)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JsonResponse({"error": "invalid_request", "detail": detail}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        # The control API answers in its own error shape; elsewhere the router's answer stands.
        if not request.url.path.startswith("/_sandbox"):
            return await http_exception_handler(request, exc)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        detail = f"{request.method} {request.url.path}: {exc.detail}"
        return JsonResponse(
            {"error": code, "detail": detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.get("/_sandbox/health")
    async def health() -> dict[str, str]:
        """Liveness."""
        return {"status": "ok"}

    return app
