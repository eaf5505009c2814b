"""The gate in front of the accounting API: authentication, tenant access, Xero's rate limits,
fault injection, latency and the rate-limit headers. A pure ASGI middleware so it can also break a
response in ways only a network can (a body cut off mid-way)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from src.xero_sandbox.responses import JsonResponse, problem
from src.xero_sandbox.runtime import SandboxRuntime

PREFIX = "/api.xro/2.0"


class DroppedConnection(Exception):
    """Raised on purpose to make the server close a connection mid-body."""


def _template(path: str) -> str:
    path = path[len(PREFIX) :]
    parts = path.strip("/").split("/")
    return "/" + parts[0] + ("/{id}" if len(parts) > 1 else "")


class AccountingGuard:
    """Wraps the app; only `/api.xro/2.0/...` requests pass through its checks."""

    def __init__(self, app: ASGIApp, runtime_holder: Any) -> None:
        self.app = app
        self.holder = runtime_holder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        runtime: SandboxRuntime = self.holder.sandbox
        if runtime.config.latency_ms:
            await asyncio.sleep(runtime.config.latency_ms / 1000)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            await problem(401, "Unauthorized", "AuthenticationUnsuccessful")(scope, receive, send)
            return
        token = auth[7:].strip()
        if runtime.faults.tokens_expire_now(scope["path"]):
            runtime.identity.expire_access_tokens()
        grant, reason = runtime.identity.access(token)
        if grant is None:
            await problem(401, "Unauthorized", reason)(scope, receive, send)
            return
        tenant_id = headers.get("xero-tenant-id", "").strip().lower()
        tenant = runtime.store.tenants.get(tenant_id)
        if tenant is None or not runtime.identity.tenant_allowed(token, tenant_id):
            await problem(403, "Forbidden", "AuthenticationUnsuccessful")(scope, receive, send)
            return

        runtime.stats.by_path[_template(scope["path"])] += 1
        runtime.stats.by_tenant[tenant_id] += 1
        limiter = runtime.limiter
        rejection = limiter.acquire(tenant_id)
        if rejection is not None:
            runtime.stats.by_status[429] += 1
            await self._too_many(
                scope, receive, send, runtime, tenant_id, rejection.problem, rejection.retry_after
            )
            return
        try:
            await self._admitted(scope, receive, send, runtime, tenant_id, tenant)
        finally:
            limiter.release(tenant_id)

    async def _too_many(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        runtime: SandboxRuntime,
        tenant_id: str,
        kind: str,
        retry_after: int,
    ) -> None:
        response = problem(429, "Too Many Requests", f"Rate limit exceeded: {kind}")
        response.headers["Retry-After"] = str(retry_after)
        response.headers["X-Rate-Limit-Problem"] = kind
        for name, value in runtime.limiter.headers(tenant_id):
            response.headers[name.decode()] = value.decode()
        await response(scope, receive, send)

    async def _admitted(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        runtime: SandboxRuntime,
        tenant_id: str,
        tenant: Any,
    ) -> None:
        fault = runtime.faults.decide(scope["path"])
        kind = fault[0] if fault else None
        if fault is not None and kind == "error":
            runtime.stats.by_status[fault[1]] += 1
            response: JsonResponse = problem(
                fault[1],
                "Service Unavailable" if fault[1] == 503 else "An error occurred",
                "Injected fault: the organisation is temporarily unavailable",
            )
            await self._with_headers(response, scope, receive, send, runtime, tenant_id)
            return
        if fault is not None and kind == "rate_limit":
            runtime.stats.by_status[429] += 1
            settings = runtime.faults.settings
            await self._too_many(
                scope,
                receive,
                send,
                runtime,
                tenant_id,
                settings.rate_limit_problem,
                settings.rate_limit_retry_after,
            )
            return
        if kind == "slow":
            await asyncio.sleep(runtime.faults.settings.slow_seconds)
        scope.setdefault("state", {})["tenant"] = tenant
        limit_headers = runtime.limiter.headers(tenant_id)
        status_seen: list[int] = []
        start_message: dict[str, Any] = {}
        body_parts: list[bytes] = []

        async def wrapped_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen.append(message["status"])
                message = {**message, "headers": list(message.get("headers", [])) + limit_headers}
                if kind in ("drop", "malformed"):
                    start_message.update(message)
                    return
                await send(message)
                return
            if kind in ("drop", "malformed"):
                body_parts.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                await self._break(send, start_message, b"".join(body_parts), kind)
                return
            await send(message)

        await self.app(scope, receive, wrapped_send)
        runtime.stats.by_status[status_seen[0] if status_seen else 500] += 1

    async def _break(
        self, send: Send, start: dict[str, Any], body: bytes, kind: str | None
    ) -> None:
        cut = body[: max(1, len(body) // 2)]
        if kind == "malformed":
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(cut)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": cut})
            return
        await send(start)  # the full Content-Length is promised...
        await send({"type": "http.response.body", "body": cut, "more_body": True})
        raise DroppedConnection("injected: connection dropped mid-body")  # ...and never kept

    async def _with_headers(
        self,
        response: JsonResponse,
        scope: Scope,
        receive: Receive,
        send: Send,
        runtime: SandboxRuntime,
        tenant_id: str,
    ) -> None:
        for name, value in runtime.limiter.headers(tenant_id):
            response.headers[name.decode()] = value.decode()
        await response(scope, receive, send)
