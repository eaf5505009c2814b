"""Money is exact on every database: extreme figures survive Xero → sync → database → API."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.domains.external_accounting.ledger.models import Invoice
from src.xero_sandbox.server import RunningSandbox
from tests.factories import bearer
from tests.fixtures import connected_org, invoices_url, sync
from tests.ground_truth import assert_complete

MAX_MONEY = "99999999999999.9999"  # numeric(19, 4) at its largest
# Each invoice: exact line figures and an exchange rate at the edges of their columns.
EXTREMES: list[dict[str, Any]] = [
    {
        "line_items": [{"quantity": "1", "unit_amount": MAX_MONEY}],
        "currency_rate": "987654321.0123456789",  # numeric(19, 10), every digit significant
    },
    {
        "line_items": [
            {"quantity": "0.0001", "unit_amount": "1", "tax_amount": "0.0001"},
            {"quantity": "1", "unit_amount": "-12345678901234.5678", "tax_amount": "-0.0001"},
        ],
        "currency_rate": "0.0000000001",
    },
    {
        "line_items": [{"quantity": MAX_MONEY, "unit_amount": "1", "tax_amount": "-0.0001"}],
        "currency_rate": "1.2345678901",
    },
]


def _create(sandbox: RunningSandbox, tenant_id: str, figures: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        invoices_url(sandbox, tenant_id),
        json={"status": "AUTHORISED", **figures},
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = json.loads(response.text, parse_float=Decimal)  # every digit
    return created


async def test_extreme_money_round_trips_exactly(
    client: httpx.AsyncClient,
    fresh_sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    org_id, key, connections = await connected_org(client, session_factory)
    connection = connections[0]
    created = [_create(fresh_sandbox, connection.tenant_id, f) for f in EXTREMES]
    assert created[0]["Total"] == Decimal(MAX_MONEY)  # the sandbox sends the exact figure
    await sync(client, key, org_id)

    # In the database: every invoice of the tenant equal to Xero's, digit for digit.
    await assert_complete(session_factory, fresh_sandbox, connection, months_back=12)

    # Out of the API: the same digits (Decimal renders as a JSON string, as the schemas say).
    async with session_factory() as session:
        ids = {
            row.provider_id: row.id
            for row in (
                await session.execute(
                    select(Invoice).where(
                        Invoice.provider_id.in_([c["InvoiceID"] for c in created])
                    )
                )
            ).scalars()
        }
    for xero in created:
        response = await client.get(
            f"/external-accounting/invoices/{ids[xero['InvoiceID']]}",
            params={"org_id": str(org_id)},
            headers=bearer(key),
        )
        assert response.status_code == 200, response.text
        ours = response.json()
        for field, name in (
            ("total", "Total"),
            ("sub_total", "SubTotal"),
            ("total_tax", "TotalTax"),
            ("amount_due", "AmountDue"),
            ("currency_rate", "CurrencyRate"),
        ):
            assert isinstance(ours[field], str), (field, ours[field])
            assert Decimal(ours[field]) == xero[name], field
        assert [
            (Decimal(li["quantity"]), Decimal(li["unit_amount"]), Decimal(li["line_amount"]))
            for li in ours["line_items"]
        ] == [(li["Quantity"], li["UnitAmount"], li["LineAmount"]) for li in xero["LineItems"]]
    listed = await client.get(
        "/external-accounting/invoices",
        params={"org_id": str(org_id), "connection_id": str(connection.id), "limit": 500},
        headers=bearer(key),
    )
    totals = {i["provider_id"]: Decimal(i["total"]) for i in listed.json()["items"]}
    assert totals[created[0]["InvoiceID"]] == Decimal(MAX_MONEY)
    assert totals[created[1]["InvoiceID"]] == Decimal("-12345678901234.5677")
