"""Xero's webhooks, as the sandbox emits them.

Every change a "Xero user" makes through the control API becomes an event. Events of all tenants
are collected over a batching window (Xero batches per app), then sent as one signed POST:
`x-xero-signature` = base64(HMAC-SHA256(key, raw body)). A delivery that fails (non-2xx, a
connection error, no answer within the timeout) is retried with exponential backoff until
`max_attempts`; a delivery that runs out of attempts disables the webhook, as Xero does after
24 hours. Everything runs on the sandbox's own event loop: the request path only appends to a
list, so a failing receiver never slows the control or accounting APIs.

Faults (seeded) drop, delay, duplicate and reorder deliveries, so a receiver's safety net can be
proven against the losses Xero's real webhooks have.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import random
import secrets
import string
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from src.xero_sandbox.config import SandboxConfig
from src.xero_sandbox.webhook_settings import WebhookSettings, WebhookUpdate
from src.xero_sandbox.xero_dates import ms_to_datetime

LOG_SIZE = 500
# Deliveries in flight at once: a hanging receiver ties up this many, the rest wait their turn.
MAX_IN_FLIGHT = 8
# A batch held back to arrive after the next one goes out alone after this many windows.
HOLD_WINDOWS = 4


def event_date(ms: int) -> str:
    """Xero's `eventDateUtc`: UTC with milliseconds and no offset (`2025-10-21T01:15:39.902`)."""
    return ms_to_datetime(ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}"


def sign(key: str, body: bytes) -> str:
    """The `x-xero-signature` of a body."""
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def entropy() -> str:
    """Xero's random `entropy` string (20 capital letters)."""
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(20))


def now_iso() -> str:
    """The current instant, ISO 8601 UTC (the delivery log's timestamps)."""
    return ms_to_datetime(time.time_ns() // 1_000_000).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Event:
    """One change, as Xero reports it: what changed and when, never the record itself."""

    category: str  # INVOICE | CREDITNOTE
    event_type: str  # CREATE | UPDATE
    tenant_id: str
    resource_id: str
    resource_url: str
    at_ms: int  # the record's new UpdatedDateUTC
    data: dict[str, str] | None = None  # CREDITNOTE events carry the note's Type and Status

    def as_json(self) -> dict[str, Any]:
        rendered: dict[str, Any] = {
            "resourceUrl": self.resource_url,
            "resourceId": self.resource_id,
            "tenantId": self.tenant_id,
            "tenantType": "ORGANISATION",
            "eventCategory": self.category,
            "eventType": self.event_type,
            "eventDateUtc": event_date(self.at_ms),
        }
        if self.data is not None:
            rendered["data"] = self.data
        return rendered


@dataclass
class Delivery:
    """One batch on its way to the receiver (a duplicate is a delivery of its own)."""

    number: int
    first_sequence: int
    last_sequence: int
    events: int
    url: str
    body: bytes
    signature: str
    duplicate: bool = False
    held_back: bool = False
    wants_duplicate: bool = False
    state: str = "pending"  # pending | delivered | dropped | abandoned
    attempts: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = field(default_factory=now_iso)
    finished_at: str | None = None
    first_attempt_done: asyncio.Event = field(default_factory=asyncio.Event)

    def as_log(self) -> dict[str, Any]:
        return {
            "delivery": self.number,
            "first_event_sequence": self.first_sequence,
            "last_event_sequence": self.last_sequence,
            "events": self.events,
            "state": self.state,
            "duplicate": self.duplicate,
            "held_back": self.held_back,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


class WebhookEmitter:
    """Collects events into batches and delivers them (see the module docstring)."""

    def __init__(self, config: SandboxConfig, time_scale: Callable[[], float]) -> None:
        self._config = config
        self._time_scale = time_scale
        # Survives resets: Xero never reuses a sequence number.
        self._sequence = 0
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self.reset()

    # -- state ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the configured subscription, with no events, deliveries, faults or counters
        (deliveries in flight are abandoned without a trace)."""
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self.settings = WebhookSettings(
            url=self._config.webhook_url,
            key=self._config.webhook_key,
            batch_window_s=self._config.webhook_batch_window_s,
            max_attempts=self._config.webhook_max_attempts,
        )
        self._rng = random.Random(self.settings.faults.seed)
        self._open: list[Event] = []
        self._window: asyncio.TimerHandle | None = None
        self._held: Delivery | None = None
        self._previous: Delivery | None = None
        self._deliveries = 0
        self._unfinished: set[int] = set()
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.log: deque[Delivery] = deque(maxlen=LOG_SIZE)
        self.counters: Counter[str] = Counter()
        self.disabled_reason: str | None = None
        self.last_intent_to_receive: dict[str, Any] | None = None

    def configure(self, update: WebhookUpdate) -> None:
        """Apply a `PUT /_sandbox/webhooks`."""
        changes = update.model_dump(exclude_unset=True)
        merged = {**self.settings.model_dump(), **changes}
        self.settings = WebhookSettings.model_validate(merged)
        if "faults" in changes:
            self._rng = random.Random(self.settings.faults.seed)
        if changes.get("enabled"):
            self.disabled_reason = None

    @property
    def active(self) -> bool:
        """Whether changes are sent now: enabled, with a URL and a key to sign with."""
        s = self.settings
        return s.enabled and s.url is not None and s.key is not None

    def state(self, log_limit: int) -> dict[str, Any]:
        """What `GET /_sandbox/webhooks` answers."""
        log = list(self.log)[-log_limit:] if log_limit else []
        return {
            **self.settings.public(),
            "active": self.active,
            "disabled_reason": self.disabled_reason,
            "last_event_sequence": self._sequence,
            "open_batch_events": len(self._open),
            "counters": {
                **{
                    name: self.counters[name]
                    for name in (
                        "events",
                        "batches",
                        "sent",
                        "delivered",
                        "failed",
                        "retried",
                        "dropped",
                        "duplicated",
                        "held_back",
                        "abandoned",
                    )
                },
                "pending": len(self._unfinished),
            },
            "intent_to_receive": self.last_intent_to_receive,
            "deliveries": [delivery.as_log() for delivery in log],
        }

    # -- events and batches --------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Queue one event for the current window (called in the request path: never waits)."""
        if not self.active:
            return
        self.counters["events"] += 1
        self._open.append(event)
        if len(self._open) >= self.settings.max_events_per_batch:
            self._close_window()
        elif self._window is None:
            self._window = self._later(self._seconds(self.settings.batch_window_s), self._close)

    def _seconds(self, xero_seconds: float) -> float:
        return xero_seconds / self._time_scale()

    def _later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        loop = asyncio.get_running_loop()
        timer = loop.call_later(delay, callback)
        # Kept so a reset can cancel them; the ones that fired are forgotten.
        self._timers = [t for t in self._timers if not t.cancelled() and t.when() > loop.time()]
        self._timers.append(timer)
        return timer

    def _close(self) -> None:
        self._window = None
        self._close_window()

    def _close_window(self) -> None:
        if self._window is not None:
            self._window.cancel()
            self._window = None
        events, self._open = self._open, []
        if not events or self.settings.url is None or self.settings.key is None:
            return
        faults = self.settings.faults
        if faults.shuffle_events:
            self._rng.shuffle(events)
        # Three rolls for every batch, whatever the rates: the same seed tells the same story.
        drop, duplicate, hold = self._rng.random(), self._rng.random(), self._rng.random()
        first = self._sequence + 1
        self._sequence += len(events)
        body = orjson.dumps(
            {
                "events": [event.as_json() for event in events],
                "firstEventSequence": first,
                "lastEventSequence": self._sequence,
                "entropy": entropy(),
            }
        )
        delivery = self._new_delivery(first, len(events), body, sign(self.settings.key, body))
        self.counters["batches"] += 1
        if drop < faults.drop_rate:
            self._finish(delivery, "dropped")
            self.counters["dropped"] += 1
            return
        delivery.wants_duplicate = duplicate < faults.duplicate_rate
        held, self._held = self._held, None
        if held is None and hold < faults.reorder_rate:
            delivery.held_back = True
            self.counters["held_back"] += 1
            self._held = delivery
            hold_s = self._seconds(self.settings.batch_window_s * HOLD_WINDOWS)
            self._later(hold_s, lambda: self._release(delivery))
            return
        self._dispatch(delivery, after=self._previous)
        if held is not None:
            self._dispatch(held, after=delivery)

    def _new_delivery(
        self, first: int, events: int, body: bytes, signature: str, *, duplicate: bool = False
    ) -> Delivery:
        self._deliveries += 1
        assert self.settings.url is not None
        delivery = Delivery(
            number=self._deliveries,
            first_sequence=first,
            last_sequence=first + events - 1,
            events=events,
            url=self.settings.url,
            body=body,
            signature=signature,
            duplicate=duplicate,
        )
        self._unfinished.add(delivery.number)
        self.log.append(delivery)
        return delivery

    def _finish(self, delivery: Delivery, state: str) -> None:
        delivery.state = state
        delivery.finished_at = now_iso()
        self._unfinished.discard(delivery.number)

    def _release(self, delivery: Delivery) -> None:
        """Send a held-back batch that no later batch came to overtake."""
        if self._held is delivery:
            self._held = None
            self._dispatch(delivery, after=self._previous)

    def _dispatch(self, delivery: Delivery, after: Delivery | None = None) -> None:
        """Send `delivery` (first attempt after `after`'s, so batches arrive in the order they
        were closed unless a fault says otherwise)."""
        self._previous = delivery
        task = asyncio.get_running_loop().create_task(self._deliver(delivery, after))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if delivery.wants_duplicate:
            copy = self._new_delivery(
                delivery.first_sequence,
                delivery.events,
                delivery.body,
                delivery.signature,
                duplicate=True,
            )
            self.counters["duplicated"] += 1
            self._dispatch(copy, after=delivery)

    # -- delivery ------------------------------------------------------------------------------

    async def _deliver(self, delivery: Delivery, after: Delivery | None) -> None:
        if after is not None:
            # Out of order on purpose: arrive after `after` has been tried once.
            try:
                await asyncio.wait_for(after.first_attempt_done.wait(), self.settings.timeout_s + 1)
            except TimeoutError:
                pass
        if self.settings.faults.delay_ms:
            await asyncio.sleep(self.settings.faults.delay_ms / 1000)
        attempt = 0
        while True:
            attempt += 1
            async with self._in_flight:
                delivered = await self._attempt(delivery)
            delivery.first_attempt_done.set()
            if delivered:
                self.counters["delivered"] += 1
                self._finish(delivery, "delivered")
                return
            if attempt >= self.settings.max_attempts:
                self.counters["abandoned"] += 1
                self._finish(delivery, "abandoned")
                # Xero gives up after 24 hours of failures and disables the webhook.
                self.settings.enabled = False
                self.disabled_reason = (
                    f"delivery {delivery.number} failed {attempt} times; "
                    're-enable with PUT /_sandbox/webhooks {"enabled": true}'
                )
                return
            self.counters["retried"] += 1
            await asyncio.sleep(self._seconds(self._backoff(attempt)))

    def _backoff(self, attempt: int) -> float:
        """Xero seconds before the next attempt: doubling from the base, capped."""
        s = self.settings
        return float(min(s.retry_base_s * 2 ** (attempt - 1), s.retry_max_s))

    async def _attempt(self, delivery: Delivery) -> bool:
        outcome = await self._post(delivery.url, delivery.body, delivery.signature)
        self.counters["sent"] += 1
        ok = "status" in outcome and 200 <= outcome["status"] < 300
        if not ok:
            self.counters["failed"] += 1
        delivery.attempts.append({"at": now_iso(), **outcome})
        return ok

    async def _post(self, url: str, body: bytes, signature: str) -> dict[str, Any]:
        """One POST within the timeout: its status and body, or what went wrong."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                response = await self._http().post(
                    url,
                    content=body,
                    headers={"content-type": "application/json", "x-xero-signature": signature},
                )
            outcome: dict[str, Any] = {
                "status": response.status_code,
                "body": response.text[:200],
                "set_cookie": "set-cookie" in response.headers,
            }
        except TimeoutError:
            outcome = {"error": f"no answer within {self.settings.timeout_s:g} s"}
        except httpx.HTTPError as error:
            outcome = {"error": f"{type(error).__name__}: {error}"[:200]}
        outcome["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
        return outcome

    def _http(self) -> httpx.AsyncClient:
        """The sandbox's one client for deliveries (a new one only if the loop changed)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(follow_redirects=False)
            self._client_loop = loop
        return self._client

    async def intent_to_receive(self) -> dict[str, Any]:
        """Xero's check of a new webhook URL: a correctly signed empty batch must get 200 with
        an empty body (and no cookies), a wrongly signed one 401, each within the timeout."""
        url, key = self.settings.url, self.settings.key
        if url is None or key is None:
            raise ValueError("the webhook has no url or key")
        body = orjson.dumps(
            {"events": [], "firstEventSequence": 0, "lastEventSequence": 0, "entropy": entropy()}
        )
        right = sign(key, body)
        wrong = sign(key + secrets.token_hex(8), body)
        correct = await self._post(url, body, right)
        correct["signature"] = "correct"
        correct["expected"] = "200 with an empty body"
        correct["ok"] = correct.get("status") == 200 and correct.get("body") == ""
        correct["ok"] = correct["ok"] and not correct.get("set_cookie")
        incorrect = await self._post(url, body, wrong)
        incorrect["signature"] = "wrong"
        incorrect["expected"] = "401"
        incorrect["ok"] = incorrect.get("status") == 401
        result = {
            "passed": bool(correct["ok"] and incorrect["ok"]),
            "url": url,
            "at": now_iso(),
            "checks": [correct, incorrect],
        }
        self.last_intent_to_receive = result
        return result

    async def aclose(self) -> None:
        """Stop delivering and close the client (the sandbox is shutting down)."""
        self.reset()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
