"""What the accounting API's error answers may carry into our errors (and so into every member's
sync history and our logs): Xero's message and code only, bounded; and no answer, however odd,
crashes the client or overflows a timestamp. (The identity client's: test_identity_client.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from src.core.http import MAX_RETRY_AFTER_SECONDS
from src.domains.external_accounting.exceptions import (
    ProviderDataInvalid,
    ProviderRateLimited,
    ProviderRejected,
)
from tests.domains.external_accounting.xero.mocked_xero import (
    mocked_accounting_client,
    scripted_handler,
    unsaved_connection,
)

PERSONAL = {"Contact": {"Name": "Jane Doe", "EmailAddress": "jane.doe@example.test"}}


@pytest.mark.parametrize(
    "retry_after",
    ["1e308", "inf", "99999999999999999999", "-5", "nan", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"],
)
async def test_any_retry_after_on_a_daily_limit_gives_a_resume_time_within_a_day(
    retry_after: str,
) -> None:
    handler, _ = scripted_handler(
        httpx.Response(429, headers={"Retry-After": retry_after, "X-Rate-Limit-Problem": "day"})
    )
    client, _, sleeps = mocked_accounting_client(handler)
    with pytest.raises(ProviderRateLimited) as raised:
        await client.get_invoices(unsaved_connection())
    seconds = raised.value.extra["retry_after_seconds"]
    assert 0 <= seconds <= MAX_RETRY_AFTER_SECONDS
    resume = datetime.fromisoformat(raised.value.extra["resume_after"])
    assert resume <= datetime.now(UTC) + timedelta(days=1, seconds=5)
    assert sleeps == []


async def test_an_http_date_retry_after_is_honoured_on_a_minute_limit() -> None:
    moment = datetime.now(UTC) + timedelta(seconds=30)
    header = moment.strftime("%a, %d %b %Y %H:%M:%S GMT")
    handler, _ = scripted_handler(
        httpx.Response(429, headers={"Retry-After": header, "X-Rate-Limit-Problem": "minute"}),
        httpx.Response(200, json={"Invoices": [], "pagination": {"pageCount": 1}}),
    )
    client, _, sleeps = mocked_accounting_client(handler)
    await client.get_invoices(unsaved_connection())
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
    handler, _ = scripted_handler(httpx.Response(400, json=body))
    client, _, _ = mocked_accounting_client(handler)
    with pytest.raises(ProviderRejected) as raised:
        await client.get_invoices(unsaved_connection())
    assert raised.value.detail.startswith("Xero refused the request (HTTP 400")


async def test_only_xeros_message_and_code_reach_the_error_bounded() -> None:
    body = {
        "ErrorNumber": 10,
        "Type": "ValidationException",
        "Message": "A validation exception occurred " + "x" * 100_000,
        "Elements": [{**PERSONAL, "ValidationErrors": []}],
    }
    handler, _ = scripted_handler(httpx.Response(400, json=body))
    client, _, _ = mocked_accounting_client(handler)
    with pytest.raises(ProviderRejected) as raised:
        await client.get_invoices(unsaved_connection())
    detail = raised.value.detail
    assert "ValidationException 10" in detail
    assert "A validation exception occurred" in detail
    assert len(detail) < 400
    assert "jane.doe" not in detail
    assert "Jane Doe" not in detail


async def test_an_error_body_without_a_message_is_not_echoed() -> None:
    handler, _ = scripted_handler(
        httpx.Response(404, json={"Title": "NotFound", "Invoice": PERSONAL})
    )
    client, _, _ = mocked_accounting_client(handler)
    with pytest.raises(ProviderRejected) as raised:
        await client.get_invoices(unsaved_connection())
    assert raised.value.detail == "Xero refused the request (HTTP 404, NotFound)."


async def test_records_we_cannot_read_are_described_in_a_bounded_sentence() -> None:
    invoice = {
        "InvoiceID": "11111111-1111-4111-8111-111111111111",
        "Type": "ACCREC",
        "Status": "PAID",
        "UpdatedDateUTC": "not a date " + "y" * 50_000,
    }
    handler, _ = scripted_handler(httpx.Response(200, json={"Invoices": [invoice]}))
    client, _, _ = mocked_accounting_client(handler)
    with pytest.raises(ProviderDataInvalid) as raised:
        await client.get_invoices(unsaved_connection())
    assert "records we cannot read" in raised.value.detail
    assert len(raised.value.detail) < 500
