"""The sandbox-only control API (`/_sandbox/...`): tenants, tokens without the OAuth dance,
limits, faults, call statistics and reset."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from src.xero_sandbox.faults import FaultPlan, FaultSettings
from src.xero_sandbox.responses import JsonResponse
from src.xero_sandbox.runtime import SandboxRuntime
from src.xero_sandbox.store import TenantData

router = APIRouter(tags=["sandbox control"])


def runtime_of(request: Request) -> SandboxRuntime:
    """The running sandbox."""
    runtime: SandboxRuntime = request.app.state.sandbox
    return runtime


def tenant_summary(tenant: TenantData) -> dict[str, Any]:
    """A tenant as the control API lists it."""
    return {
        "tenant_id": tenant.tenant_id,
        "name": tenant.name,
        "invoices": tenant.invoice_count,
        "accounts": len(tenant.accounts),
    }


class NewTenant(BaseModel):
    name: str | None = Field(default=None, max_length=200)
    invoices: int = Field(default=100, ge=0, le=2_000_000)


class TokenRequest(BaseModel):
    tenant_ids: list[str] | None = None
    expires_in: int | None = Field(default=None, ge=1)
    scopes: str = "offline_access accounting.invoices.read accounting.settings.read"


class LimitSettings(BaseModel):
    enabled: bool | None = None
    time_scale: float | None = Field(default=None, gt=0)
    minute_limit: int | None = Field(default=None, ge=1)
    day_limit: int | None = Field(default=None, ge=1)
    concurrent_limit: int | None = Field(default=None, ge=1)
    app_minute_limit: int | None = Field(default=None, ge=1)
    reset_counters: bool = False


def _error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status_code=status)


@router.get("/tenants")
async def list_tenants(request: Request) -> Response:
    """Every tenant with its invoice and account counts."""
    return JsonResponse([tenant_summary(t) for t in runtime_of(request).store.tenants.values()])


@router.post("/tenants", status_code=201)
async def create_tenant(request: Request, body: NewTenant) -> Response:
    """Add a tenant with generated data."""
    tenant = runtime_of(request).store.add_tenant(body.name, body.invoices)
    return JsonResponse(tenant_summary(tenant), status_code=201)


@router.post("/tokens")
async def mint_tokens(request: Request, body: TokenRequest) -> Response:
    """Access and refresh tokens for the given tenants (default: all), as if the user consented."""
    runtime = runtime_of(request)
    tenant_ids = body.tenant_ids if body.tenant_ids is not None else list(runtime.store.tenants)
    unknown = [t for t in tenant_ids if t not in runtime.store.tenants]
    if unknown:
        return _error(404, "unknown_tenant", f"No tenant {unknown[0]} in the sandbox")
    identity = runtime.identity
    grant = identity.create_grant(runtime.config.client_id, body.scopes, tenant_ids)
    return JsonResponse(identity.issue_tokens(grant, body.expires_in))


def faults_answer(plan: FaultPlan) -> JsonResponse:
    """The fault settings in force and how many faults were injected since they were set.
    (`mode="json"` because `error_rates` is keyed by status code: JSON keys are strings.)"""
    return JsonResponse(
        {"settings": plan.settings.model_dump(mode="json"), "injected": dict(plan.injected)}
    )


@router.get("/client-settings")
async def client_settings(request: Request) -> Response:
    """What a Xero client needs to use this sandbox, keyed by ledgersync's setting names: the
    Xero URLs at the address this request came to, the client credentials, and the limits now
    in force (`ledgersync serve --sandbox URL` reads it)."""
    runtime = runtime_of(request)
    limiter = runtime.limiter
    config = runtime.config.model_copy(
        update={
            "limits_enabled": limiter.enabled,
            "time_scale": limiter.time_scale,
            "minute_limit": limiter.minute_limit,
            "concurrent_limit": limiter.concurrent_limit,
            "app_minute_limit": limiter.app_minute_limit,
        }
    )
    return JsonResponse(config.client_settings(str(request.base_url).rstrip("/")))


@router.get("/faults")
async def get_faults(request: Request) -> Response:
    """The fault settings in force and how many faults were injected."""
    return faults_answer(runtime_of(request).faults)


@router.put("/faults")
async def put_faults(request: Request, body: FaultSettings) -> Response:
    """Replace the fault settings (an empty body turns every fault off); answers what is now in
    force."""
    plan = runtime_of(request).faults
    plan.configure(body)
    return faults_answer(plan)


@router.delete("/faults")
async def clear_faults(request: Request) -> Response:
    """Turn every fault off; answers the (empty) settings now in force."""
    runtime = runtime_of(request)
    runtime.faults = FaultPlan()
    return faults_answer(runtime.faults)


@router.get("/limits")
async def get_limits(request: Request) -> Response:
    """The rate limits in force and the counters per tenant."""
    limiter = runtime_of(request).limiter
    return JsonResponse(
        {
            "enabled": limiter.enabled,
            "time_scale": limiter.time_scale,
            "minute_limit": limiter.minute_limit,
            "day_limit": limiter.day_limit,
            "concurrent_limit": limiter.concurrent_limit,
            "app_minute_limit": limiter.app_minute_limit,
            "tenants": {
                t: {"minute": c.minute.count, "day": c.day.count, "in_flight": c.in_flight}
                for t, c in limiter.tenants.items()
            },
        }
    )


@router.put("/limits")
async def put_limits(request: Request, body: LimitSettings) -> Response:
    """Change limits or the time scale; `reset_counters` starts every window afresh."""
    limiter = runtime_of(request).limiter
    for name, value in body.model_dump(exclude_none=True, exclude={"reset_counters"}).items():
        setattr(limiter, name, value)
    if body.reset_counters or body.time_scale is not None:
        limiter.reset()
    return await get_limits(request)


@router.get("/stats")
async def get_stats(request: Request) -> Response:
    """Accounting calls by path, tenant and status, and identity token calls by grant type."""
    runtime = runtime_of(request)
    return JsonResponse({**runtime.stats.as_dict(), "token_calls": runtime.identity.token_calls})


@router.post("/stats/reset")
async def reset_stats(request: Request) -> Response:
    """Zero the call statistics; answers them, zeroed."""
    runtime = runtime_of(request)
    runtime.stats.reset()
    runtime.identity.token_calls.clear()
    return await get_stats(request)


@router.post("/reset")
async def reset(request: Request) -> Response:
    """Regenerate the data from the seed; forget tokens, connections, faults and counters.
    Answers what was reset and the tenants regenerated."""
    runtime = runtime_of(request)
    runtime.reset()
    return JsonResponse(
        {
            "reset": ["data", "tokens", "connections", "faults", "limits", "stats"],
            "seed": runtime.config.seed,
            "tenants": [tenant_summary(t) for t in runtime.store.tenants.values()],
        }
    )
