"""Fault injection for the token endpoint: what a refresh meets on a bad day at Xero.

A refresh can fail before Xero acts (a 5xx, a slow answer), or after Xero rotated the refresh
token and the answer never reached the client (the connection drops, or a 200 arrives without a
refresh token). The second kind is what Xero's 30-minute grace period for the spent refresh
token exists for; these knobs let tests produce both, deterministically (the next N calls)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

from src.xero_sandbox.responses import JsonResponse

router = APIRouter(tags=["sandbox control"])


class TokenFaultSettings(BaseModel):
    """What `PUT /_sandbox/token-faults` accepts (an empty body turns every fault off)."""

    latency_ms: float = Field(default=0.0, ge=0, le=600_000)
    # The next token calls answer these statuses before Xero does anything.
    next_errors: list[int] = Field(default_factory=list)
    # Retry-After sent with those errors (any text: clients must survive nonsense).
    error_retry_after: str | None = Field(default=None, max_length=400)
    # The next refreshes rotate the token, then the connection drops before the answer.
    next_lost: int = Field(default=0, ge=0)
    # The next refreshes rotate the token and answer 200 without a refresh token.
    next_without_refresh_token: int = Field(default=0, ge=0)


class TokenFaultPlan:
    """The token endpoint's faults in force and how many were injected."""

    def __init__(self) -> None:
        self.configure(TokenFaultSettings())

    def configure(self, settings: TokenFaultSettings) -> None:
        self.settings = settings.model_copy(deep=True)
        self.injected: dict[str, int] = {}

    def take(self, kind: str) -> bool:
        """Consume one `next_<kind>` fault, if any is left."""
        left: int = getattr(self.settings, f"next_{kind}")
        if not left:
            return False
        setattr(self.settings, f"next_{kind}", left - 1)
        self.injected[kind] = self.injected.get(kind, 0) + 1
        return True

    def next_error(self) -> int | None:
        """The status the next token call answers with, if an error is due."""
        if not self.settings.next_errors:
            return None
        self.injected["errors"] = self.injected.get("errors", 0) + 1
        return self.settings.next_errors.pop(0)


class LostAnswer(Exception):
    """Raised on purpose so the server closes the connection before the answer is complete."""


class DroppedResponse(Response):
    """Promises a body (Content-Length) and closes the connection after half of it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send({"type": "http.response.body", "body": self.body[:10], "more_body": True})
        raise LostAnswer("injected: the token endpoint's answer was lost")


def _plan(request: Request) -> TokenFaultPlan:
    plan: TokenFaultPlan = request.app.state.sandbox.identity.token_faults
    return plan


def _body(plan: TokenFaultPlan) -> dict[str, object]:
    return {"settings": plan.settings.model_dump(), "injected": plan.injected}


@router.get("/token-faults")
async def get_token_faults(request: Request) -> Response:
    """The token endpoint's fault settings in force and how many faults were injected."""
    return JsonResponse(_body(_plan(request)))


@router.put("/token-faults")
async def put_token_faults(request: Request, body: TokenFaultSettings) -> Response:
    """Replace the token endpoint's fault settings."""
    plan = _plan(request)
    plan.configure(body)
    return JsonResponse(_body(plan))


@router.delete("/token-faults")
async def clear_token_faults(request: Request) -> Response:
    """Turn every token endpoint fault off."""
    plan = _plan(request)
    plan.configure(TokenFaultSettings())
    return JsonResponse(_body(plan))
