"""The sandbox emits webhooks like Xero: every control-API change becomes an event, events are
batched per window across tenants, each batch signed, retried with backoff when the receiver
fails, and faults drop, delay, duplicate and reorder deliveries. A real receiver (uvicorn in a
thread) records what arrives."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from src.xero_sandbox.server import RunningSandbox
from src.xero_sandbox.webhooks import sign
from src.xero_sandbox.xero_dates import parse_xero_date
from tests.fixtures import invoices_url, mint_tokens, tenant_ids
from tests.xero_sandbox.conftest import validate_schema
from tests.xero_sandbox.webhook_receiver import (
    KEY,
    Received,
    WebhookReceiver,
    settle,
    subscribe,
    webhooks,
)

# Xero's eventDateUtc: UTC, milliseconds, no offset (the spec's own examples).
EVENT_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}$")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def new_invoice(sandbox: RunningSandbox, tenant: str, status: str = "AUTHORISED") -> str:
    created = httpx.post(invoices_url(sandbox, tenant), json={"status": status})
    created.raise_for_status()
    return str(created.json()["InvoiceID"])


def edit(sandbox: RunningSandbox, tenant: str, invoice_id: str, reference: str) -> dict[str, Any]:
    response = httpx.post(
        f"{invoices_url(sandbox, tenant)}/{invoice_id}/edit", json={"reference": reference}
    )
    response.raise_for_status()
    invoice: dict[str, Any] = response.json()
    return invoice


def sequences(received: list[Received]) -> list[tuple[int, int]]:
    return [(r.payload["firstEventSequence"], r.payload["lastEventSequence"]) for r in received]


def test_an_edit_arrives_as_a_signed_schema_valid_batch_within_a_second(
    fresh_sandbox: RunningSandbox, receiver: WebhookReceiver
) -> None:
    tenant = tenant_ids(fresh_sandbox)[0]
    invoice_id = new_invoice(fresh_sandbox, tenant)
    subscribe(fresh_sandbox, receiver)  # the default window: half a second
    started = time.monotonic()
    edited = edit(fresh_sandbox, tenant, invoice_id, "changed by a Xero user")
    [delivery] = receiver.wait_for(1, timeout_s=1.0)
    assert delivery.at - started < 1.0
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.signature == sign(KEY, delivery.body)
    assert delivery.signature != sign("another key", delivery.body)
    payload = delivery.payload
    validate_schema(payload, "WebhookEvent", spec="xero-webhooks.yaml")
    assert set(payload) == {"events", "firstEventSequence", "lastEventSequence", "entropy"}
    assert payload["firstEventSequence"] == payload["lastEventSequence"] >= 1
    [event] = payload["events"]
    assert event == {
        "resourceUrl": f"{fresh_sandbox.base_url}/api.xro/2.0/Invoices/{invoice_id}",
        "resourceId": invoice_id,
        "tenantId": tenant,
        "tenantType": "ORGANISATION",
        "eventCategory": "INVOICE",
        "eventType": "UPDATE",
        "eventDateUtc": event["eventDateUtc"],
    }
    uuid.UUID(event["resourceId"])
    uuid.UUID(event["tenantId"])
    # eventDateUtc is the moment of the change: the invoice's new UpdatedDateUTC, to the ms.
    assert EVENT_DATE.match(event["eventDateUtc"])
    updated = parse_xero_date(edited["UpdatedDateUTC"])
    assert event["eventDateUtc"] == updated.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    # The resourceUrl serves the changed invoice to a client with access, as Xero's does.
    token = mint_tokens(fresh_sandbox, [tenant])["access_token"]
    served = httpx.get(
        event["resourceUrl"], headers={"Authorization": f"Bearer {token}", "xero-tenant-id": tenant}
    ).json()["Invoices"][0]
    assert served["Reference"] == "changed by a Xero user"
    state = settle(fresh_sandbox)
    assert state["counters"] | {"pending": 0} == state["counters"]
    assert {k: state["counters"][k] for k in ("events", "batches", "sent", "delivered")} == {
        "events": 1,
        "batches": 1,
        "sent": 1,
        "delivered": 1,
    }
    assert state["deliveries"][-1]["state"] == "delivered"
    assert state["deliveries"][-1]["attempts"][0]["status"] == 200


def test_several_changes_in_one_window_arrive_as_one_batch_across_tenants(
    fresh_sandbox: RunningSandbox, receiver: WebhookReceiver
) -> None:
    first, second = tenant_ids(fresh_sandbox)
    existing = new_invoice(fresh_sandbox, first, status="DRAFT")
    subscribe(fresh_sandbox, receiver, batch_window_s=1.0)
    created = new_invoice(fresh_sandbox, second)
    edit(fresh_sandbox, first, existing, "one")
    assert httpx.post(f"{invoices_url(fresh_sandbox, first)}/{existing}/authorise").is_success
    paid = httpx.post(f"{invoices_url(fresh_sandbox, second)}/{created}/pay", json={})
    assert paid.json()["Status"] == "PAID"
    [delivery] = receiver.wait_for(1)
    payload = delivery.payload
    validate_schema(payload, "WebhookEvent", spec="xero-webhooks.yaml")
    events = payload["events"]
    assert [(e["tenantId"], e["resourceId"], e["eventType"]) for e in events] == [
        (second, created, "CREATE"),
        (first, existing, "UPDATE"),
        (first, existing, "UPDATE"),
        (second, created, "UPDATE"),
    ]
    assert payload["lastEventSequence"] - payload["firstEventSequence"] == 3
    time.sleep(0.3)
    assert len(receiver.received) == 1
    # The next change starts a new window and continues the sequence.
    edit(fresh_sandbox, first, existing, "two")
    later = receiver.wait_for(2, timeout_s=3)[1].payload
    assert later["firstEventSequence"] == payload["lastEventSequence"] + 1


def test_bulk_touch_emits_an_update_per_invoice_split_into_batches(
    fresh_sandbox: RunningSandbox, receiver: WebhookReceiver
) -> None:
    tenant = tenant_ids(fresh_sandbox)[0]
    subscribe(fresh_sandbox, receiver, batch_window_s=0.2, max_events_per_batch=40)
    touched = httpx.post(f"{invoices_url(fresh_sandbox, tenant)}/touch", json={"count": 100})
    assert touched.json() == {"touched": 100}
    received = receiver.wait_for(3)
    time.sleep(0.4)
    # In the order they were closed, even when closed at once.
    assert [len(r.payload["events"]) for r in receiver.received] == [40, 40, 20]
    ids = {e["resourceId"] for r in received for e in r.payload["events"]}
    assert len(ids) == 100
    base = received[0].payload["firstEventSequence"]
    assert sequences(received) == [
        (base, base + 39),
        (base + 40, base + 79),
        (base + 80, base + 99),
    ]


def test_the_window_is_compressed_by_the_time_scale(
    fresh_sandbox: RunningSandbox, receiver: WebhookReceiver
) -> None:
    tenant = tenant_ids(fresh_sandbox)[0]
    invoice_id = new_invoice(fresh_sandbox, tenant)
    # Ten Xero seconds of window at 20 Xero seconds per real second: half a real second.
    httpx.put(f"{fresh_sandbox.base_url}/_sandbox/limits", json={"time_scale": 20})
    subscribe(fresh_sandbox, receiver, batch_window_s=10)
    started = time.monotonic()
    edit(fresh_sandbox, tenant, invoice_id, "soon")
    [delivery] = receiver.wait_for(1, timeout_s=3)
    assert 0.4 < delivery.at - started < 1.5


def test_a_failing_receiver_gets_the_batch_again_after_backoff(
    fresh_sandbox: RunningSandbox, receiver: WebhookReceiver
) -> None:
    tenant = tenant_ids(fresh_sandbox)[0]
    invoice_id = new_invoice(fresh_sandbox, tenant)
    subscribe(fresh_sandbox, receiver, batch_window_s=0.1, retry_base_s=0.3)
    receiver.statuses = [500, 503]
    edit(fresh_sandbox, tenant, invoice_id, "retried")
    first, second, third = receiver.wait_for(3)
    assert first.body == second.body == third.body
    assert third.signature == sign(KEY, third.body)
    # Exponential: 0.3 s, then 0.6 s (time scale 1).
    assert 0.25 < second.at - first.at < 0.6
    assert 0.55 < third.at - second.at < 1.0
    state = settle(fresh_sandbox)
    counters = state["counters"]
    assert (counters["sent"], counters["failed"], counters["retried"]) == (3, 2, 2)
    assert (counters["delivered"], counters["pending"]) == (1, 0)
    assert [a["status"] for a in state["deliveries"][-1]["attempts"]] == [500, 503, 200]


def test_a_receiver_that_never_answers_in_time_runs_out_of_attempts_and_is_disabled(
    fresh_sandbox: RunningSandbox, receiver: WebhookReceiver
) -> None:
    tenant = tenant_ids(fresh_sandbox)[0]
    invoice_id = new_invoice(fresh_sandbox, tenant)
    subscribe(fresh_sandbox, receiver, batch_window_s=0.05, timeout_s=0.2, retry_base_s=0.05)
    webhooks(fresh_sandbox, max_attempts=2)
    receiver.hold.set()
    edit(fresh_sandbox, tenant, invoice_id, "timed out")
    state = settle(fresh_sandbox)
    assert [a["error"] for a in state["deliveries"][-1]["attempts"]] == [
        "no answer within 0.2 s"
    ] * 2
    assert state["counters"]["abandoned"] == 1
    # As Xero does after a day of failures: the webhook is disabled, nothing more is sent.
    assert state["enabled"] is False
    assert state["active"] is False
    assert "failed 2 times" in state["disabled_reason"]
    receiver.hold.clear()
    edit(fresh_sandbox, tenant, invoice_id, "while disabled")
    assert webhooks(fresh_sandbox)["counters"]["events"] == 1
    assert webhooks(fresh_sandbox, enabled=True)["disabled_reason"] is None


def test_intent_to_receive_passes_a_verifying_receiver_and_fails_a_lax_one(
    fresh_sandbox: RunningSandbox,
) -> None:
    url = f"{fresh_sandbox.base_url}/_sandbox/webhooks/intent-to-receive"
    refused = httpx.post(url)
    assert refused.status_code == 409
    assert refused.json()["error"] == "webhook_not_configured"
    with WebhookReceiver(verify_key=KEY) as correct:
        subscribe(fresh_sandbox, correct)
        answer = httpx.post(url).json()
        assert answer["passed"] is True
        assert [(c["signature"], c["status"], c["ok"]) for c in answer["checks"]] == [
            ("correct", 200, True),
            ("wrong", 401, True),
        ]
        good, bad = correct.wait_for(2)
        assert good.payload == {
            "events": [],
            "firstEventSequence": 0,
            "lastEventSequence": 0,
            "entropy": good.payload["entropy"],
        }
        assert good.signature == sign(KEY, good.body)
        assert bad.body == good.body
        assert bad.signature != good.signature
    with WebhookReceiver() as lax:  # answers 200 whatever the signature
        subscribe(fresh_sandbox, lax)
        answer = httpx.post(url).json()
        assert answer["passed"] is False
        assert [(c["status"], c["ok"]) for c in answer["checks"]] == [(200, True), (200, False)]
    assert webhooks(fresh_sandbox)["intent_to_receive"]["passed"] is False


def _batches(sandbox: RunningSandbox, tenant: str, invoice_id: str, count: int) -> None:
    """`count` edits, each in a window of its own."""
    for n in range(count):
        edit(sandbox, tenant, invoice_id, f"edit {n}")
        time.sleep(0.12)


def test_dropped_deliveries_are_never_sent_and_the_seed_repeats_the_pattern(
    fresh_sandbox: RunningSandbox, receiver: WebhookReceiver
) -> None:
    tenant = tenant_ids(fresh_sandbox)[0]
    patterns = []
    for _ in range(2):
        invoice_id = new_invoice(fresh_sandbox, tenant)
        subscribe(
            fresh_sandbox,
            receiver,
            batch_window_s=0.05,
            retry_base_s=0.05,
            faults={"drop_rate": 0.5, "seed": 11},
        )
        receiver.statuses = [500] * 3  # a dropped batch is never retried, a failed one is
        _batches(fresh_sandbox, tenant, invoice_id, 8)
        state = settle(fresh_sandbox)
        patterns.append([d["state"] for d in state["deliveries"]])
        assert state["counters"]["dropped"] == patterns[-1].count("dropped")
        assert all(not d["attempts"] for d in state["deliveries"] if d["state"] == "dropped")
        httpx.post(f"{fresh_sandbox.base_url}/_sandbox/reset").raise_for_status()
        assert webhooks(fresh_sandbox)["counters"]["batches"] == 0
    assert patterns[0] == patterns[1]
    assert 0 < patterns[0].count("dropped") < 8
    assert set(patterns[0]) == {"dropped", "delivered"}


def test_duplicated_and_delayed_deliveries(
    fresh_sandbox: RunningSandbox, receiver: WebhookReceiver
) -> None:
    tenant = tenant_ids(fresh_sandbox)[0]
    invoice_id = new_invoice(fresh_sandbox, tenant)
    subscribe(
        fresh_sandbox,
        receiver,
        batch_window_s=0.05,
        faults={"duplicate_rate": 1.0, "delay_ms": 400},
    )
    changed = time.monotonic()
    edit(fresh_sandbox, tenant, invoice_id, "twice")
    original, duplicate = receiver.wait_for(2)
    assert original.body == duplicate.body
    assert original.at - changed >= 0.4
    state = settle(fresh_sandbox)
    assert state["counters"]["duplicated"] == 1
    assert [d["duplicate"] for d in state["deliveries"]] == [False, True]


def test_reordered_batches_and_shuffled_events(
    fresh_sandbox: RunningSandbox, receiver: WebhookReceiver
) -> None:
    tenant = tenant_ids(fresh_sandbox)[0]
    invoice_id = new_invoice(fresh_sandbox, tenant)
    subscribe(
        fresh_sandbox,
        receiver,
        batch_window_s=1.0,
        faults={"reorder_rate": 1.0, "shuffle_events": True, "seed": 3},
    )
    edit(fresh_sandbox, tenant, invoice_id, "first batch")
    time.sleep(1.2)  # the first batch closes and is held back
    with httpx.Client() as client:
        for n in range(6):
            client.post(
                f"{invoices_url(fresh_sandbox, tenant)}/{invoice_id}/edit",
                json={"reference": f"second batch {n}"},
            ).raise_for_status()
    later, earlier = receiver.wait_for(2)
    first = earlier.payload["firstEventSequence"]
    assert sequences([later, earlier]) == [(first + 1, first + 6), (first, first)]
    # Each edit bumps the invoice's UpdatedDateUTC: in order, the event dates would ascend.
    dates = [e["eventDateUtc"] for e in later.payload["events"]]
    assert len(set(dates)) == 6
    assert dates != sorted(dates)  # seed 3 shuffles them (a fixed permutation, not chance)
    assert settle(fresh_sandbox)["counters"]["held_back"] == 1


def test_a_held_back_batch_no_later_batch_overtakes_goes_out_alone(
    fresh_sandbox: RunningSandbox, receiver: WebhookReceiver
) -> None:
    tenant = tenant_ids(fresh_sandbox)[0]
    invoice_id = new_invoice(fresh_sandbox, tenant)
    subscribe(fresh_sandbox, receiver, batch_window_s=0.1, faults={"reorder_rate": 1.0})
    changed = time.monotonic()
    edit(fresh_sandbox, tenant, invoice_id, "alone")
    [delivery] = receiver.wait_for(1)
    # Closed after one window, then held for four more.
    assert delivery.at - changed >= 0.5
    assert settle(fresh_sandbox)["deliveries"][-1]["held_back"] is True


def test_the_control_and_accounting_apis_stay_fast_while_the_receiver_hangs(
    fresh_sandbox: RunningSandbox, receiver: WebhookReceiver
) -> None:
    tenant = tenant_ids(fresh_sandbox)[0]
    invoice_id = new_invoice(fresh_sandbox, tenant)
    token = mint_tokens(fresh_sandbox, [tenant])["access_token"]
    subscribe(fresh_sandbox, receiver, batch_window_s=0.05)
    receiver.hold.set()
    edit(fresh_sandbox, tenant, invoice_id, "hung")
    receiver.wait_for(1)  # the receiver holds the first delivery open
    slowest = 0.0
    with httpx.Client() as client:
        for n in range(30):
            started = time.monotonic()
            client.post(
                f"{invoices_url(fresh_sandbox, tenant)}/{invoice_id}/edit",
                json={"reference": f"edit {n}"},
            ).raise_for_status()
            client.get(
                f"{fresh_sandbox.base_url}/api.xro/2.0/Invoices/{invoice_id}",
                headers={"Authorization": f"Bearer {token}", "xero-tenant-id": tenant},
            ).raise_for_status()
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.01)
    assert slowest < 0.25
    assert webhooks(fresh_sandbox)["counters"]["pending"] >= 1
    receiver.hold.clear()
    state = settle(fresh_sandbox)
    assert state["counters"]["events"] == 31
    assert state["counters"]["delivered"] == state["counters"]["batches"]
    delivered = sum(len(r.payload["events"]) for r in receiver.received)
    assert delivered == 31


def test_settings_hide_the_key_refuse_bad_input_and_reset_to_the_configuration(
    fresh_sandbox: RunningSandbox, receiver: WebhookReceiver
) -> None:
    state = webhooks(fresh_sandbox)
    assert (state["url"], state["key_set"], state["active"]) == (None, False, False)
    subscribe(fresh_sandbox, receiver, faults={"drop_rate": 0.1})
    state = webhooks(fresh_sandbox)
    assert "key" not in state
    assert KEY not in httpx.get(f"{fresh_sandbox.base_url}/_sandbox/webhooks").text
    assert (state["url"], state["key_set"], state["active"]) == (receiver.url, True, True)
    assert state["faults"]["drop_rate"] == 0.1
    # A PUT without the key keeps it.
    assert webhooks(fresh_sandbox, batch_window_s=2)["key_set"] is True
    for bad in (
        {"url": "ftp://example.com/hook"},
        {"url": "not a url"},
        {"key": ""},
        {"faults": {"drop_rate": 2}},
        {"batch_window_s": 0},
    ):
        refused = httpx.put(f"{fresh_sandbox.base_url}/_sandbox/webhooks", json=bad)
        assert refused.status_code == 422, bad
        assert refused.json()["error"] == "invalid_request"
    httpx.post(f"{fresh_sandbox.base_url}/_sandbox/reset").raise_for_status()
    state = webhooks(fresh_sandbox)
    assert (state["url"], state["key_set"], state["faults"]["drop_rate"]) == (None, False, 0)
