"""A request id per request: the caller's `X-Request-ID` when it is a sensible token, else a
new one; sent back in the response and bound to every log line of the request (uvicorn's
access line included, which it writes while the response starts)."""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from src.core.log_context import log_context

HEADER = "x-request-id"
_RAW = HEADER.encode("latin-1")
# A caller's id is kept only if it cannot forge log fields or flood a line.
_ACCEPTED = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_from(value: str | None) -> str:
    """The caller's id if acceptable, else a fresh one."""
    if value is not None and _ACCEPTED.fullmatch(value):
        return value
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Pure ASGI (no per-request task or body buffering, unlike BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k.decode("latin-1") == HEADER),
            None,
        )
        request_id = request_id_from(sent)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        with log_context(request_id=request_id):
            await self.app(scope, receive, send_with_id)
