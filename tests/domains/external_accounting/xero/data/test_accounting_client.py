"""Narrow unit tests of XeroAccountingClient's retry policy and request building, with a mocked
transport (everything else talks to the sandbox over real HTTP)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from src.domains.external_accounting.exceptions import (
    ProviderDataInvalid,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    TenantAccessRevoked,
)
from src.domains.external_accounting.xero.data.accounting_client import (
    RetryPolicy,
)
from src.domains.external_accounting.xero.data.mapping import line_item_rows
from src.domains.external_accounting.xero.data.query import if_modified_since, where_filter
from src.domains.external_accounting.xero.data.xero_models import (
    decode_invoices,
    parse_xero_datetime,
)
from tests.domains.external_accounting.xero.mocked_xero import (
    mocked_accounting_client,
    scripted_handler,
    unsaved_connection,
)

INVOICE = {
    "InvoiceID": "11111111-1111-4111-8111-111111111111",
    "Type": "ACCREC",
    "Status": "PAID",
    "Date": "/Date(1419937200000+1300)/",
    "UpdatedDateUTC": "/Date(1573755038314+0000)/",
    "Total": 115.10,
    "SomethingNew": {"x": 1},
    "LineItems": [],
}


def _ok(invoices: list[dict[str, Any]] | None = None) -> httpx.Response:
    return httpx.Response(
        200, json={"Invoices": invoices or [INVOICE], "pagination": {"pageCount": 1}}
    )


async def test_request_carries_tenant_filters_and_if_modified_since() -> None:
    handler, seen = scripted_handler(_ok())
    client, _, _ = mocked_accounting_client(handler)
    page = await client.get_invoices(
        unsaved_connection(),
        types=["ACCREC"],
        statuses=["AUTHORISED"],
        date_from=date(2025, 11, 1),
        modified_since=datetime(2025, 7, 22, 14, 30, 5, 900000, tzinfo=UTC),
    )
    request = seen[0]
    assert request.headers["xero-tenant-id"] == "tenant-1"
    assert request.headers["authorization"] == "Bearer token-0"
    assert request.headers["if-modified-since"] == "Tue, 22 Jul 2025 14:30:05 GMT"
    assert request.url.params["where"] == 'Type=="ACCREC" AND Date>=DateTime(2025,11,01)'
    assert request.url.params["Statuses"] == "AUTHORISED"
    assert (request.url.params["page"], request.url.params["pageSize"]) == ("1", "1000")
    invoice = page.invoices[0]
    assert invoice.total == Decimal("115.10")  # parsed as Decimal, never through float
    assert invoice.date == date(2014, 12, 30)  # the +1300 offset does not shift the instant
    assert invoice.updated_date_utc == datetime(2019, 11, 14, 18, 10, 38, 314000, tzinfo=UTC)


def test_where_filters_quote_and_combine() -> None:
    assert where_filter(types=["ACCREC", "ACCPAY"]) == '(Type=="ACCREC" OR Type=="ACCPAY")'
    assert where_filter(types=['A"B']) == 'Type=="A\\"B"'
    assert where_filter(date_to=date(2024, 2, 29)) == "Date<=DateTime(2024,02,29)"
    assert where_filter() is None
    assert (
        if_modified_since(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
        == "Thu, 02 Jan 2025 03:04:05 GMT"
    )
    assert parse_xero_datetime("2025-01-02T03:04:05") == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("/Date(1573755038314+0000)/", datetime(2019, 11, 14, 18, 10, 38, 314000, tzinfo=UTC)),
        ("/Date(1573755038314-0500)/", datetime(2019, 11, 14, 18, 10, 38, 314000, tzinfo=UTC)),
        ("/Date(1573755038314)/", datetime(2019, 11, 14, 18, 10, 38, 314000, tzinfo=UTC)),
        ("/Date(-1)/", datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),  # before 1970
        ("/Date(0+1300)/", datetime(1970, 1, 1, tzinfo=UTC)),
        ("/Date(253402300799999)/", datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),
    ],
)
def test_xero_dates_are_exact_utc_instants(text: str, moment: datetime) -> None:
    parsed = parse_xero_datetime(text)
    assert parsed == moment
    assert parsed is not None
    assert parsed.utcoffset() == timedelta(0)


def test_a_xero_date_that_is_no_number_is_refused() -> None:
    with pytest.raises(ValueError, match="not a Xero date"):
        parse_xero_datetime("/Date(soon)/")


async def test_transient_failures_are_retried_with_capped_backoff() -> None:
    handler, seen = scripted_handler(
        httpx.Response(503),
        httpx.ConnectError("refused"),
        httpx.Response(200, content=b'{"Invo'),
        _ok(),
    )
    client, _, sleeps = mocked_accounting_client(handler)
    client.retry = RetryPolicy(max_attempts=4, base_delay_s=0.5, max_delay_s=1.0)
    page = await client.get_invoices(unsaved_connection())
    assert len(page.invoices) == 1
    assert sleeps == [0.5, 1.0, 1.0]
    assert client.api_calls == 4 == len(seen)


async def test_gives_up_after_the_last_attempt() -> None:
    handler, _ = scripted_handler(
        httpx.Response(500), httpx.Response(502), httpx.ReadTimeout("slow")
    )
    client, _, sleeps = mocked_accounting_client(handler)
    with pytest.raises(ProviderUnavailable, match="3 attempts"):
        await client.get_invoices(unsaved_connection())
    assert len(sleeps) == 2


async def test_minute_limit_waits_for_retry_after() -> None:
    handler, _ = scripted_handler(
        httpx.Response(429, headers={"Retry-After": "17", "X-Rate-Limit-Problem": "minute"}), _ok()
    )
    client, _, sleeps = mocked_accounting_client(handler)
    await client.get_invoices(unsaved_connection())
    assert sleeps == [17.0]


async def test_daily_limit_raises_at_once_with_resume_time() -> None:
    handler, seen = scripted_handler(
        httpx.Response(429, headers={"Retry-After": "3600", "X-Rate-Limit-Problem": "day"})
    )
    client, _, sleeps = mocked_accounting_client(handler)
    with pytest.raises(ProviderRateLimited) as raised:
        await client.get_invoices(unsaved_connection())
    assert sleeps == []
    assert raised.value.extra["retry_after_seconds"] == 3600
    assert len(seen) == 1


async def test_unauthorized_refreshes_once() -> None:
    handler, seen = scripted_handler(httpx.Response(401), _ok())
    client, tokens, _ = mocked_accounting_client(handler)
    await client.get_invoices(unsaved_connection())
    assert tokens.refreshes == 1
    assert seen[1].headers["authorization"] == "Bearer token-1"
    handler, _ = scripted_handler(httpx.Response(401), httpx.Response(401))
    client, tokens, _ = mocked_accounting_client(handler)
    with pytest.raises(ProviderRejected):
        await client.get_invoices(unsaved_connection())
    assert tokens.refreshes == 1


async def test_client_errors_are_not_retried() -> None:
    body = {
        "ErrorNumber": 10,
        "Type": "ValidationException",
        "Message": "A validation exception occurred",
        "Elements": [{"ValidationErrors": [{"Message": "bad filter"}]}],
    }
    handler, seen = scripted_handler(httpx.Response(400, json=body))
    client, _, sleeps = mocked_accounting_client(handler)
    with pytest.raises(ProviderRejected, match="bad filter"):
        await client.get_invoices(unsaved_connection())
    assert (len(seen), sleeps) == (1, [])
    handler, _ = scripted_handler(
        httpx.Response(403, json={"Detail": "AuthenticationUnsuccessful"})
    )
    client, _, _ = mocked_accounting_client(handler)
    with pytest.raises(TenantAccessRevoked):
        await client.get_invoices(unsaved_connection())


async def test_budget_is_read_from_every_response() -> None:
    headers = {
        "X-DayLimit-Remaining": "4321",
        "X-MinLimit-Remaining": "55",
        "X-AppMinLimit-Remaining": "9999",
    }
    handler, _ = scripted_handler(httpx.Response(200, json={"Invoices": []}, headers=headers))
    client, _, _ = mocked_accounting_client(handler)
    await client.get_invoices(unsaved_connection())
    budget = client.throttle.budget("tenant-1")
    assert (budget.day_remaining, budget.minute_remaining, budget.app_minute_remaining) == (
        4321,
        55,
        9999,
    )


async def test_the_daily_reserve_is_left_to_the_customers_other_apps() -> None:
    low = httpx.Response(200, json={"Invoices": []}, headers={"X-DayLimit-Remaining": "400"})
    handler, seen = scripted_handler(low, _ok())
    client, _, sleeps = mocked_accounting_client(handler)
    client.retry = RetryPolicy(daily_reserve=500, reserve_pause_s=600)
    await client.get_invoices(unsaved_connection())
    with pytest.raises(ProviderRateLimited, match="kept for its other apps") as raised:
        await client.get_invoices(unsaved_connection())
    assert len(seen) == 1  # refused before calling Xero
    assert raised.value.extra["retry_after_seconds"] == 600
    assert sleeps == []
    # After the pause the old reading no longer binds: the next call goes out and re-reads.
    budget = client.throttle.budget("tenant-1")
    assert budget.observed_at is not None
    budget.observed_at -= timedelta(seconds=601)
    await client.get_invoices(unsaved_connection())
    assert len(seen) == 2


async def test_money_keeps_every_digit_and_the_raw_document_is_verbatim() -> None:
    invoice = (
        b'{"InvoiceID":"a","Type":"ACCPAY","Status":"PAID","Total":1234567890123.1234567891,'
        b'"CurrencyRate":0.000000012345678901,"UpdatedDateUTC":"/Date(1573755038314-0800)/",'
        b'"LineItems":[{"Quantity":3.00,"UnitAmount":0.1}]}'
    )
    body = b'{"Invoices":[' + invoice + b'],"pagination":{"pageCount":7,"itemCount":6543}}'
    handler, _ = scripted_handler(httpx.Response(200, content=body))
    client, _, _ = mocked_accounting_client(handler)
    page = await client.get_invoices(unsaved_connection())
    parsed = page.invoices[0]
    assert parsed.total == Decimal("1234567890123.1234567891")
    assert parsed.currency_rate == Decimal("0.000000012345678901")
    assert str(parsed.line_items[0].quantity) == "3.00"  # the digits Xero sent, scale included
    assert parsed.updated_date_utc == datetime(2019, 11, 14, 18, 10, 38, 314000, tzinfo=UTC)
    assert page.raw[0] == invoice  # stored as Xero sent it: nothing re-serialised
    assert (page.page_count, page.item_count) == (7, 6543)


async def test_records_without_what_every_xero_invoice_has_are_refused_not_retried() -> None:
    broken = {key: value for key, value in INVOICE.items() if key != "Type"}
    handler, seen = scripted_handler(_ok([broken]))
    client, _, sleeps = mocked_accounting_client(handler)
    with pytest.raises(ProviderDataInvalid, match="Type") as raised:
        await client.get_invoices(unsaved_connection())
    assert raised.value.code == "provider_data_invalid"
    assert (len(seen), sleeps) == (1, [])
    bad_date = {**INVOICE, "UpdatedDateUTC": "/Date(yesterday)/"}
    handler, _ = scripted_handler(_ok([bad_date]))
    client, _, _ = mocked_accounting_client(handler)
    with pytest.raises(ProviderDataInvalid):
        await client.get_invoices(unsaved_connection())


def test_line_tracking_is_kept_as_sent_and_a_null_list_is_empty() -> None:
    body = (
        b'{"Invoices":[{"InvoiceID":"a","Type":"ACCREC","Status":"PAID",'
        b'"UpdatedDateUTC":"/Date(0)/","LineItems":[{"Tracking":[{"Name":"Region","Option":"N"}]},'
        b'{"Tracking":null},{}]}]}'
    )
    invoice = decode_invoices(body, 1).invoices[0]
    lines = line_item_rows(uuid.uuid4(), invoice)
    assert [line.tracking for line in lines] == ['[{"Name":"Region","Option":"N"}]', "[]", "[]"]
    assert [line.position for line in lines] == [0, 1, 2]


async def test_a_full_page_that_pagination_calls_the_last_ends_the_paging() -> None:
    def page(count: int, page_count: int) -> httpx.Response:
        invoices = [
            {**INVOICE, "InvoiceID": f"id-{i}", "UpdatedDateUTC": f"/Date({1_000_000 + i * 5000})/"}
            for i in range(count)
        ]
        return httpx.Response(
            200, json={"Invoices": invoices, "pagination": {"pageCount": page_count}}
        )

    handler, seen = scripted_handler(page(3, 1))
    client, _, _ = mocked_accounting_client(handler)
    pages = [p async for p in client.iter_invoice_pages(unsaved_connection(), page_size=3)]
    assert len(seen) == 1  # full, but Xero says it is the only page: no confirming call
    assert [len(p.invoices) for p in pages] == [3]
    handler, seen = scripted_handler(page(3, 2), page(1, 1))
    client, _, _ = mocked_accounting_client(handler)
    pages = [p async for p in client.iter_invoice_pages(unsaved_connection(), page_size=3)]
    assert len(seen) == 2  # a second page exists: the keyset moves on to it
