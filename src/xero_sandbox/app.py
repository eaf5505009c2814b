"""The sandbox application: Xero's identity and accounting APIs at Xero's own paths."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from src.xero_sandbox import accounting, control, data_control, identity, token_faults
from src.xero_sandbox.config import SandboxConfig
from src.xero_sandbox.guard import PREFIX, AccountingGuard
from src.xero_sandbox.responses import JsonResponse
from src.xero_sandbox.runtime import SandboxRuntime
from src.xero_sandbox.store import SandboxStore


def create_sandbox_app(
    config: SandboxConfig | None = None, store: SandboxStore | None = None
) -> FastAPI:
    """A sandbox with data generated from `config` (or the given store)."""
    config = config or SandboxConfig()
    app = FastAPI(title="Xero sandbox (ledgersync)", version="1.0")
    app.state.sandbox = SandboxRuntime.build(config, store)
    app.include_router(identity.router)
    app.include_router(accounting.router, prefix=PREFIX)
    app.include_router(control.router, prefix="/_sandbox")
    app.include_router(data_control.router, prefix="/_sandbox")
    app.include_router(token_faults.router, prefix="/_sandbox")
    app.add_middleware(AccountingGuard, runtime_holder=app.state)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JsonResponse({"error": "invalid_request", "detail": detail}, status_code=422)

    @app.get("/_sandbox/health")
    async def health() -> dict[str, str]:
        """Liveness."""
        return {"status": "ok"}

    return app
