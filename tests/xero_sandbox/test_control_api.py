"""Every control-API answer is JSON that says what it did (never an empty 204 or a 500)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from src.xero_sandbox.server import RunningSandbox
from tests.fixtures import SANDBOX_CONFIG, mint_tokens, tenant_ids
from tests.xero_sandbox.conftest import XeroApi


def _json(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def test_error_rates_are_set_and_reported(xero: XeroApi) -> None:
    base = f"{xero.sandbox.base_url}/_sandbox/faults"
    put = _json(httpx.put(base, json={"error_rates": {"503": 1.0}, "path_contains": "/Accounts"}))
    assert put == _json(httpx.get(base))
    assert put["settings"]["error_rates"] == {"503": 1.0}
    assert put["injected"] == {}
    assert xero.get("/Accounts").status_code == 503
    after = _json(httpx.get(base))
    assert after["settings"]["path_contains"] == "/Accounts"
    assert after["injected"] == {"error": 1}


def test_clearing_faults_answers_the_settings_now_in_force(xero: XeroApi) -> None:
    base = f"{xero.sandbox.base_url}/_sandbox/faults"
    _json(httpx.put(base, json={"next_errors": [500], "error_rates": {"429": 0.5}}))
    cleared = _json(httpx.delete(base))
    assert cleared["settings"]["error_rates"] == {}
    assert cleared["settings"]["next_errors"] == []
    assert cleared == _json(httpx.get(base))
    assert xero.get("/Accounts").status_code == 200


@pytest.mark.parametrize(
    "settings",
    [
        {"error_rates": {"200": 0.5}},
        {"error_rates": {"abc": 0.5}},
        {"error_rates": {"500": 2}},
        {"next_errors": [99]},
        {"slow_rate": -1},
    ],
)
def test_impossible_faults_are_a_422_that_says_why(
    fresh_sandbox: RunningSandbox, settings: dict[str, object]
) -> None:
    base = f"{fresh_sandbox.base_url}/_sandbox/faults"
    refused = _json(httpx.put(base, json=settings), status=422)
    assert refused["error"] == "invalid_request"
    assert refused["detail"]
    assert _json(httpx.get(base))["settings"]["next_errors"] == []


def test_stats_reset_answers_the_zeroed_stats(xero: XeroApi) -> None:
    xero.get("/Accounts")
    reset = _json(httpx.post(f"{xero.sandbox.base_url}/_sandbox/stats/reset"))
    assert reset == {
        "total": 0,
        "by_path": {},
        "by_tenant": {},
        "by_status": {},
        "token_calls": {},
    }


def test_reset_answers_what_it_reset(fresh_sandbox: RunningSandbox) -> None:
    base = f"{fresh_sandbox.base_url}/_sandbox"
    _json(httpx.post(f"{base}/tenants", json={"name": "Extra Ltd", "invoices": 3}), status=201)
    _json(httpx.put(f"{base}/faults", json={"next_errors": [500]}))
    reset = _json(httpx.post(f"{base}/reset"))
    assert set(reset["reset"]) >= {"data", "tokens", "faults", "stats"}
    assert reset["seed"] == SANDBOX_CONFIG.seed
    assert [t["tenant_id"] for t in reset["tenants"]] == tenant_ids(fresh_sandbox)
    assert len(reset["tenants"]) == SANDBOX_CONFIG.tenants
    assert _json(httpx.get(f"{base}/faults"))["settings"]["next_errors"] == []


def test_every_other_control_call_answers_json(fresh_sandbox: RunningSandbox) -> None:
    base = f"{fresh_sandbox.base_url}/_sandbox"
    tenant = tenant_ids(fresh_sandbox)[0]
    assert _json(httpx.get(f"{base}/health")) == {"status": "ok"}
    assert len(_json(httpx.get(f"{base}/tenants"))) == SANDBOX_CONFIG.tenants
    created = _json(httpx.post(f"{base}/tenants", json={"invoices": 2}), status=201)
    assert created["invoices"] == 2
    assert "access_token" in mint_tokens(fresh_sandbox, [tenant])
    unknown = _json(httpx.post(f"{base}/tokens", json={"tenant_ids": ["nope"]}), status=404)
    assert unknown["error"] == "unknown_tenant"
    limits = _json(httpx.put(f"{base}/limits", json={"minute_limit": 77}))
    assert limits["minute_limit"] == 77
    assert _json(httpx.get(f"{base}/limits")) == limits
    stats = _json(httpx.get(f"{base}/stats"))
    assert stats["token_calls"] == {}
    truth = _json(httpx.get(f"{base}/tenants/{tenant}/invoices", params={"limit": 1}))
    assert truth["total"] == SANDBOX_CONFIG.invoices
    assert _json(httpx.get(f"{base}/tenants/{tenant}/accounts"))["Accounts"]
    new = _json(httpx.post(f"{base}/tenants/{tenant}/invoices", json={}), status=201)
    assert new["Status"] == "DRAFT"
    touched = _json(httpx.post(f"{base}/tenants/{tenant}/invoices/touch", json={"count": 2}))
    assert touched == {"touched": 2}
    edited = _json(
        httpx.post(
            f"{base}/tenants/{tenant}/invoices/{new['InvoiceID']}/edit",
            json={"reference": "changed"},
        )
    )
    assert edited["Reference"] == "changed"
    refused = _json(
        httpx.post(f"{base}/tenants/{tenant}/invoices/{new['InvoiceID']}/pay"),
        status=400,
    )
    assert refused["error"] == "invalid_mutation"
    missing = _json(httpx.get(f"{base}/tenants/nope/accounts"), status=404)
    assert missing["error"] == "unknown_tenant"


def test_client_settings_point_at_this_sandbox(fresh_sandbox: RunningSandbox) -> None:
    base = fresh_sandbox.base_url
    _json(httpx.put(f"{base}/_sandbox/limits", json={"minute_limit": 42, "time_scale": 60}))
    settings = _json(httpx.get(f"{base}/_sandbox/client-settings"))
    assert settings == SANDBOX_CONFIG.model_copy(
        update={"minute_limit": 42, "time_scale": 60.0}
    ).client_settings(base)
    assert settings["xero_connections_url"] == f"{base}/connections"
    assert settings["xero_minute_seconds"] == 1.0  # the limits in force, not those at start


def test_unknown_control_calls_say_what_is_wrong(fresh_sandbox: RunningSandbox) -> None:
    base = f"{fresh_sandbox.base_url}/_sandbox"
    missing = _json(httpx.get(f"{base}/nothing-here"), status=404)
    assert missing == {"error": "not_found", "detail": "GET /_sandbox/nothing-here: Not Found"}
    wrong = _json(httpx.post(f"{base}/faults"), status=405)
    assert wrong["error"] == "method_not_allowed"
    assert "allow" in {name.lower() for name in httpx.post(f"{base}/faults").headers}
