"""Xero's rate limits and the fault injection, seen by a client over real HTTP."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.fixtures import inject_faults, reset_sandbox_stats, sandbox_stats, tighten_limits
from tests.xero_sandbox.conftest import XeroApi


def test_every_response_carries_the_remaining_budget(xero: XeroApi) -> None:
    tighten_limits(xero.sandbox, minute_limit=60, day_limit=5000, reset_counters=True)
    first = xero.get("/Accounts")
    second = xero.get("/Accounts")
    assert first.headers["X-MinLimit-Remaining"] == "59"
    assert second.headers["X-MinLimit-Remaining"] == "58"
    assert second.headers["X-DayLimit-Remaining"] == "4998"
    assert int(second.headers["X-AppMinLimit-Remaining"]) == 10_000 - 2


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"minute_limit": 3}, "minute"),
        ({"day_limit": 3}, "day"),
        ({"app_minute_limit": 3}, "appminute"),
    ],
)
def test_over_a_limit_is_429_with_retry_after(
    xero: XeroApi, settings: dict[str, int], problem: str
) -> None:
    tighten_limits(xero.sandbox, **settings, reset_counters=True)
    statuses = [xero.get("/Accounts").status_code for _ in range(3)]
    refused = xero.get("/Accounts")
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.headers["X-Rate-Limit-Problem"] == problem
    assert int(refused.headers["Retry-After"]) >= 1


def test_time_scale_compresses_the_minute_window(xero: XeroApi) -> None:
    # A Xero minute lasts 0.1 s.
    tighten_limits(xero.sandbox, minute_limit=2, time_scale=600, reset_counters=True)
    for _ in range(2):
        assert xero.get("/Accounts").status_code == 200
    refused = xero.get("/Accounts")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    time.sleep(0.15)
    assert xero.get("/Accounts").status_code == 200


async def test_more_than_five_in_flight_is_a_concurrent_429(xero: XeroApi) -> None:
    tighten_limits(xero.sandbox, minute_limit=1000, reset_counters=True)
    inject_faults(xero.sandbox, next_slow=5, slow_seconds=0.5)
    headers = {"Authorization": f"Bearer {xero.token}", "xero-tenant-id": xero.tenant}
    async with httpx.AsyncClient(
        base_url=f"{xero.sandbox.base_url}/api.xro/2.0", headers=headers
    ) as client:
        slow = [asyncio.create_task(client.get("/Accounts")) for _ in range(5)]
        await asyncio.sleep(0.2)
        sixth = await client.get("/Accounts")
        responses = await asyncio.gather(*slow)
    assert [r.status_code for r in responses] == [200] * 5
    assert sixth.status_code == 429
    assert sixth.headers["X-Rate-Limit-Problem"] == "concurrent"


def test_limits_can_be_switched_off(xero: XeroApi) -> None:
    tighten_limits(xero.sandbox, enabled=False, minute_limit=1, reset_counters=True)
    assert [xero.get("/Accounts").status_code for _ in range(3)] == [200, 200, 200]


def test_injected_errors_and_429_bursts(xero: XeroApi) -> None:
    inject_faults(
        xero.sandbox, next_errors=[503, 500], rate_limit_burst=1, rate_limit_retry_after=7
    )
    codes = [xero.get("/Accounts") for _ in range(4)]
    assert [r.status_code for r in codes] == [503, 500, 429, 200]
    assert codes[2].headers["Retry-After"] == "7"
    assert "X-MinLimit-Remaining" in codes[0].headers


def test_skip_first_lets_calls_through_before_faults_start(xero: XeroApi) -> None:
    inject_faults(xero.sandbox, path_contains="/Invoices", skip_first=2, next_errors=[500])
    assert xero.get("/Accounts").status_code == 200  # not a matching path
    statuses = [xero.get("/Invoices", params={"page": n}).status_code for n in (1, 2, 3, 4)]
    assert statuses == [200, 200, 500, 200]


def test_malformed_body_and_dropped_connection(xero: XeroApi) -> None:
    inject_faults(xero.sandbox, next_drops=1)
    with pytest.raises(httpx.RemoteProtocolError):
        xero.get("/Invoices", params={"page": 1})
    inject_faults(xero.sandbox, next_malformed=1)
    broken = xero.get("/Invoices", params={"page": 1})
    assert broken.status_code == 200
    with pytest.raises(ValueError, match=r"."):
        broken.json()
    assert xero.get("/Invoices", params={"page": 1}).status_code == 200


def test_stats_count_calls_by_path(xero: XeroApi) -> None:
    reset_sandbox_stats(xero.sandbox)
    xero.get("/Invoices", params={"page": 1})
    xero.get("/Accounts")
    stats = sandbox_stats(xero.sandbox)
    assert stats["by_path"] == {"/Invoices": 1, "/Accounts": 1}
    assert stats["by_tenant"] == {xero.tenant: 2}
