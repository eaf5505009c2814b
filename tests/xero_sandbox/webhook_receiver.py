"""A real webhook receiver for the sandbox to deliver to: a small ASGI app served by uvicorn in a
thread on a free port, recording each request's raw body and headers and answering with the
statuses the test sets (or checking the signature itself, like a correct receiver); and the
control calls that subscribe it and wait for the deliveries to settle."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import orjson
import uvicorn
from starlette.types import Receive, Scope, Send

from src.xero_sandbox.server import RunningSandbox, free_port
from src.xero_sandbox.webhooks import sign

KEY = "sandbox-webhook-key-for-tests"


@dataclass(frozen=True)
class Received:
    """One POST as it arrived."""

    body: bytes
    headers: dict[str, str]
    at: float  # time.monotonic()

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = orjson.loads(self.body)
        return payload

    @property
    def signature(self) -> str:
        return self.headers.get("x-xero-signature", "")


class WebhookReceiver:
    """Answers `statuses` in turn, then `default_status`; with `verify_key`, 200 for a correct
    signature and 401 for a wrong one instead. While `hold` is set every request waits."""

    def __init__(self, verify_key: str | None = None) -> None:
        self.verify_key = verify_key
        self.statuses: list[int] = []
        self.default_status = 200
        self.hold = threading.Event()
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/xero/webhooks"
        self._server = uvicorn.Server(
            uvicorn.Config(
                self._app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="off",
                interface="asgi3",
            )
        )
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve()), name="webhook-receiver", daemon=True
        )

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        with self._lock:
            self.received.append(Received(body, headers, time.monotonic()))
            status = self.statuses.pop(0) if self.statuses else self.default_status
        while self.hold.is_set():
            await asyncio.sleep(0.01)
        if self.verify_key is not None:
            right = sign(self.verify_key, body) == headers.get("x-xero-signature")
            status = 200 if right else 401
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def wait_for(self, count: int, timeout_s: float = 5.0) -> list[Received]:
        """The first `count` requests, once they have arrived (fails after `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received[:count])
            time.sleep(0.01)
        raise AssertionError(f"{len(self.received)} deliveries arrived, not {count}")

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("the webhook receiver did not start")
            time.sleep(0.01)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.hold.clear()
        self._server.should_exit = True
        self._thread.join(timeout=10)


def webhooks(sandbox: RunningSandbox, **settings: Any) -> dict[str, Any]:
    """PUT /_sandbox/webhooks (when given settings) or GET it."""
    url = f"{sandbox.base_url}/_sandbox/webhooks"
    response = httpx.put(url, json=settings) if settings else httpx.get(url)
    response.raise_for_status()
    state: dict[str, Any] = response.json()
    return state


def subscribe(sandbox: RunningSandbox, receiver: WebhookReceiver, **settings: Any) -> None:
    webhooks(sandbox, url=receiver.url, key=KEY, **settings)


def settle(sandbox: RunningSandbox, timeout_s: float = 5.0) -> dict[str, Any]:
    """The webhook state once nothing is pending or waiting for its window."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = webhooks(sandbox)
        if not state["counters"]["pending"] and not state["open_batch_events"]:
            return state
        assert time.monotonic() < deadline, state["counters"]
        time.sleep(0.02)
