"""The service's Prometheus metrics: every metric object, in one registry, incremented at the one
place its event happens (Xero calls in the accounting client's `_send`, run ends in
`ledger.runs`, ...). Labels are bounded: endpoints are path templates, statuses codes, problems
one of a few words; nothing is labelled by invoice or run, and by tenant only when
`METRICS_TENANT_LABELS` allows it. Queue depth is not here: it is the database's, read when
`/metrics` is scraped (`src/domains/metrics`)."""

from __future__ import annotations

import re

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

XERO_CALLS = Counter(
    "ledgersync_xero_calls",
    "Calls to Xero's accounting API (every attempt), by endpoint template and HTTP status "
    "('error' when no response came).",
    ["endpoint", "status"],
    registry=REGISTRY,
)
XERO_CALLS_BY_TENANT = Counter(
    "ledgersync_xero_tenant_calls",
    "Calls to Xero's accounting API by tenant (only with METRICS_TENANT_LABELS=true).",
    ["tenant_id"],
    registry=REGISTRY,
)
XERO_RATE_LIMITED = Counter(
    "ledgersync_xero_rate_limited",
    "429 answers from Xero, by X-Rate-Limit-Problem (minute, day, appminute, concurrent, other).",
    ["problem"],
    registry=REGISTRY,
)
XERO_LIMIT_WAIT = Counter(
    "ledgersync_xero_limit_wait_seconds",
    "Seconds calls waited on Xero's limits: 'pacing' by the call limiter, 'retry_after' after a "
    "429.",
    ["reason"],
    registry=REGISTRY,
)
SYNC_RUNS = Counter(
    "ledgersync_sync_runs",
    "Sync run attempts that ended, by object type and final status (success, failed, paused, "
    "cancelled, queued: to be retried, lost: its lease was taken).",
    ["object_type", "status"],
    registry=REGISTRY,
)
SYNC_RUN_DURATION = Histogram(
    "ledgersync_sync_run_duration_seconds",
    "How long sync run attempts took, by object type.",
    ["object_type"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)
RECORDS_WRITTEN = Counter(
    "ledgersync_records_written",
    "Invoices and accounts written by syncs, by object type and change (created, updated).",
    ["object_type", "change"],
    registry=REGISTRY,
)
WEBHOOK_EVENTS_RECEIVED = Counter(
    "ledgersync_webhook_events_received",
    "Events in the signed Xero webhook deliveries received.",
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES_REJECTED = Counter(
    "ledgersync_webhook_deliveries_rejected",
    "Xero webhook deliveries refused, by reason (signature, too_large, invalid).",
    ["reason"],
    registry=REGISTRY,
)
TOKEN_REFRESHES = Counter(
    "ledgersync_xero_token_refreshes",
    "Xero token refreshes by outcome (refreshed, failed, needs_reauth, refused).",
    ["outcome"],
    registry=REGISTRY,
)
OUTBOUND_EVENTS = Counter(
    "ledgersync_outbound_webhook_events",
    "Events owed to at least one customer endpoint (written to the outbox), by event type.",
    ["event_type"],
    registry=REGISTRY,
)
OUTBOUND_ATTEMPTS = Counter(
    "ledgersync_outbound_webhook_attempts",
    "Delivery attempts to customer endpoints, by event type and outcome: delivered (a 2xx), "
    "retrying (no 2xx, another attempt is scheduled), given_up (no 2xx on the last attempt). "
    "Attempted = the sum; failed = retrying + given_up.",
    ["event_type", "outcome"],
    registry=REGISTRY,
)
OUTBOUND_ATTEMPT_DURATION = Histogram(
    "ledgersync_outbound_webhook_attempt_duration_seconds",
    "How long delivery attempts took (the POST, until the answer or the error), by event type "
    "and outcome (delivered, retrying, given_up).",
    ["event_type", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
OUTBOUND_OUTCOMES = ("delivered", "retrying", "given_up")

RATE_LIMIT_PROBLEMS = frozenset({"minute", "day", "appminute", "concurrent"})
# An id in a path (a GUID, a number) becomes `{id}`: one series per endpoint, not per record.
_ID_SEGMENT = re.compile(r"^(?:[0-9a-fA-F-]{32,36}|\d+)$")


def endpoint_template(path: str) -> str:
    """`/Invoices/0b8e...` -> `/Invoices/{id}`: the label of a call."""
    parts = [("{id}" if _ID_SEGMENT.match(part) else part) for part in path.split("/")]
    return "/".join(parts)


def rate_limit_problem(header: str | None) -> str:
    """X-Rate-Limit-Problem as a bounded label (Xero's words, or 'other')."""
    value = (header or "").strip().lower()
    return value if value in RATE_LIMIT_PROBLEMS else "other"
