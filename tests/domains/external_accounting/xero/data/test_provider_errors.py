"""What Xero's error answers may carry into our errors (and so into every member's sync history
and our logs): Xero's message and code only, bounded; and no answer, however odd, crashes the
client or overflows a timestamp."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from src.core.http import MAX_RETRY_AFTER_SECONDS
from src.core.settings import Settings
from src.domains.external_accounting.exceptions import (
    ProviderDataInvalid,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from src.domains.external_accounting.xero.auth.identity_client import (
    TokenEndpointError,
    XeroIdentityClient,
)
from tests.domains.external_accounting.xero.data.test_accounting_client import (
    _client,
    _connection,
    _sequence,
)

PERSONAL = {"Contact": {"Name": "Jane Doe", "EmailAddress": "jane.doe@example.test"}}


@pytest.mark.parametrize(
    "retry_after",
    ["1e308", "inf", "99999999999999999999", "-5", "nan", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"],
)
async def test_any_retry_after_on_a_daily_limit_gives_a_resume_time_within_a_day(
    retry_after: str,
) -> None:
    handler, _ = _sequence(
        httpx.Response(429, headers={"Retry-After": retry_after, "X-Rate-Limit-Problem": "day"})
    )
    client, _, sleeps = _client(handler)
    with pytest.raises(ProviderRateLimited) as raised:
        await client.get_invoices(_connection())
    seconds = raised.value.extra["retry_after_seconds"]
    assert 0 <= seconds <= MAX_RETRY_AFTER_SECONDS
    resume = datetime.fromisoformat(raised.value.extra["resume_after"])
    assert resume <= datetime.now(UTC) + timedelta(days=1, seconds=5)
    assert sleeps == []


async def test_an_http_date_retry_after_is_honoured_on_a_minute_limit() -> None:
    moment = datetime.now(UTC) + timedelta(seconds=30)
    header = moment.strftime("%a, %d %b %Y %H:%M:%S GMT")
    handler, _ = _sequence(
        httpx.Response(429, headers={"Retry-After": header, "X-Rate-Limit-Problem": "minute"}),
        httpx.Response(200, json={"Invoices": [], "pagination": {"pageCount": 1}}),
    )
    client, _, sleeps = _client(handler)
    await client.get_invoices(_connection())
    assert len(sleeps) == 1
    assert 25 <= sleeps[0] <= 31


@pytest.mark.parametrize(
    "body",
    [
        [1, 2, 3],
        "a plain string",
        42,
        None,
        {"Elements": "not a list"},
        {"Elements": [1, "x", {"ValidationErrors": "nope"}, {"ValidationErrors": [7, None]}]},
        {"Message": {"nested": "object"}, "Type": ["list"]},
    ],
)
async def test_an_error_body_of_any_shape_is_a_provider_rejected(body: Any) -> None:
    handler, _ = _sequence(httpx.Response(400, json=body))
    client, _, _ = _client(handler)
    with pytest.raises(ProviderRejected) as raised:
        await client.get_invoices(_connection())
    assert raised.value.detail.startswith("Xero refused the request (HTTP 400")


async def test_only_xeros_message_and_code_reach_the_error_bounded() -> None:
    body = {
        "ErrorNumber": 10,
        "Type": "ValidationException",
        "Message": "A validation exception occurred " + "x" * 100_000,
        "Elements": [{**PERSONAL, "ValidationErrors": []}],
    }
    handler, _ = _sequence(httpx.Response(400, json=body))
    client, _, _ = _client(handler)
    with pytest.raises(ProviderRejected) as raised:
        await client.get_invoices(_connection())
    detail = raised.value.detail
    assert "ValidationException 10" in detail
    assert "A validation exception occurred" in detail
    assert len(detail) < 400
    assert "jane.doe" not in detail
    assert "Jane Doe" not in detail


async def test_an_error_body_without_a_message_is_not_echoed() -> None:
    handler, _ = _sequence(httpx.Response(404, json={"Title": "NotFound", "Invoice": PERSONAL}))
    client, _, _ = _client(handler)
    with pytest.raises(ProviderRejected) as raised:
        await client.get_invoices(_connection())
    assert raised.value.detail == "Xero refused the request (HTTP 404, NotFound)."


def _identity(*responses: httpx.Response) -> XeroIdentityClient:
    handler, _ = _sequence(*responses)
    return XeroIdentityClient(
        httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        Settings(xero_token_url="https://identity.xero.test/connect/token"),
    )


@pytest.mark.parametrize("body", [[], "text", 7, None])
async def test_a_token_endpoint_body_that_is_not_an_object_is_temporary(body: Any) -> None:
    identity = _identity(httpx.Response(400, json=body))
    with pytest.raises(ProviderUnavailable, match="malformed"):
        await identity.refresh("r")


async def test_a_200_without_a_refresh_token_is_temporary_not_a_crash() -> None:
    identity = _identity(
        httpx.Response(200, json={"access_token": "a", "expires_in": 1800, "token_type": "Bearer"})
    )
    with pytest.raises(ProviderUnavailable, match="without a refresh token"):
        await identity.refresh("r")


async def test_only_an_oauth_error_code_is_kept_from_the_token_endpoint() -> None:
    identity = _identity(
        httpx.Response(400, json={"error": "<b>" + "x" * 5000, "error_description": "secret"})
    )
    with pytest.raises(TokenEndpointError) as raised:
        await identity.refresh("r")
    assert raised.value.error == "unknown_error"
    identity = _identity(httpx.Response(400, json={"error": "invalid_grant"}))
    with pytest.raises(TokenEndpointError) as raised:
        await identity.refresh("r")
    assert raised.value.error == "invalid_grant"


@pytest.mark.parametrize("retry_after", ["1e308", "inf", "nan", "99999999999999999999"])
async def test_the_token_endpoints_retry_after_is_clamped(retry_after: str) -> None:
    identity = _identity(httpx.Response(429, headers={"Retry-After": retry_after}))
    with pytest.raises(ProviderUnavailable) as raised:
        await identity.refresh("r")
    assert 0 <= raised.value.extra["retry_after_seconds"] <= MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize("body", [{"id": "x"}, [1], [{"tenantId": "t"}], "x"])
async def test_a_malformed_connections_answer_is_temporary(body: Any) -> None:
    identity = _identity(httpx.Response(200, json=body))
    with pytest.raises(ProviderUnavailable, match="malformed"):
        await identity.connections("a")


async def test_records_we_cannot_read_are_described_in_a_bounded_sentence() -> None:
    invoice = {
        "InvoiceID": "11111111-1111-4111-8111-111111111111",
        "Type": "ACCREC",
        "Status": "PAID",
        "UpdatedDateUTC": "not a date " + "y" * 50_000,
    }
    handler, _ = _sequence(httpx.Response(200, json={"Invoices": [invoice]}))
    client, _, _ = _client(handler)
    with pytest.raises(ProviderDataInvalid) as raised:
        await client.get_invoices(_connection())
    assert "records we cannot read" in raised.value.detail
    assert len(raised.value.detail) < 500
