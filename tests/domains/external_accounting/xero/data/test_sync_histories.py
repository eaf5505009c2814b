"""Property: whatever a Xero user does between syncs (create, edit, authorise, part-pay, pay an
invoice dated years ago, void, delete a draft), and however incremental and full syncs (of any
`months_back`) interleave, the local tables end equal to Xero's ground truth: every invoice the
database holds, every invoice a full sync covered, every invoice changed since it was stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.domains.external_accounting.ledger.models import Invoice
from src.xero_sandbox.server import RunningSandbox
from src.xero_sandbox.xero_dates import parse_xero_date
from tests.fixtures import (
    connected_org,
    empty_tables,
    invoices_url,
    reset_sandbox,
    sandbox_clock,
    sync,
)
from tests.ground_truth import assert_matches_truth, ground_truth, in_scope

ACTIONS = (
    "create",
    "edit",
    "authorise",
    "part_pay",
    "pay",
    "pay_old",
    "void",
    "delete",
    "sync",
    "full",
)
MONTHS_BACK = (1, 6, 12, 36, 120)
ELIGIBLE = {
    "edit": ("DRAFT", "SUBMITTED", "AUTHORISED"),
    "authorise": ("DRAFT", "SUBMITTED"),
    "part_pay": ("AUTHORISED",),
    "pay": ("AUTHORISED",),
    "void": ("SUBMITTED",),
    "delete": ("DRAFT",),
}

history = st.lists(
    st.tuples(st.sampled_from(ACTIONS), st.integers(min_value=0, max_value=10_000)),
    min_size=1,
    max_size=12,
)


def _apply(sandbox: RunningSandbox, tenant: str, action: str, pick: int) -> str | None:
    """Do one user action on the sandbox; returns the invoice it touched (None if it had none)."""
    base = invoices_url(sandbox, tenant)
    if action == "create":
        date = (datetime.now(UTC) - timedelta(days=pick % 2000)).date().isoformat()
        status = ("DRAFT", "SUBMITTED", "AUTHORISED")[pick % 3]
        body: dict[str, Any] = httpx.post(
            base,
            json={
                "type": ("ACCREC", "ACCPAY")[pick % 2],
                "status": status,
                "date": date,
                "lines": 1 + pick % 5,
            },
        ).json()
        return str(body["InvoiceID"])
    truth = ground_truth(sandbox, tenant)
    if action == "pay_old":
        cutoff = datetime.now(UTC) - timedelta(days=3 * 365)
        candidates = [
            i for i in truth if i["Status"] == "AUTHORISED" and parse_xero_date(i["Date"]) < cutoff
        ]
        action = "pay"
    else:
        candidates = [i for i in truth if i["Status"] in ELIGIBLE[action]]
    if not candidates:
        return None
    target = candidates[pick % len(candidates)]["InvoiceID"]
    if action == "edit":
        response = httpx.post(
            f"{base}/{target}/edit", json={"reference": f"edited {pick}", "add_line": pick % 2 == 0}
        )
    elif action == "part_pay":
        response = httpx.post(f"{base}/{target}/pay", json={"amount": "1.00"})
    else:
        response = httpx.post(f"{base}/{target}/{action}")
    return str(target) if response.status_code == 200 else None


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=history)
# The reproduction: an old invoice paid, a new one created seconds later, a full sync.
@example(steps=[("pay_old", 0), ("create", 0), ("full", 2), ("sync", 0)])
async def test_random_histories_converge_to_the_ground_truth(
    client: httpx.AsyncClient,
    sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
    steps: list[tuple[str, int]],
) -> None:
    reset_sandbox(sandbox)
    await empty_tables(session_factory.kw["bind"])
    org_id, key, connections = await connected_org(client, session_factory)
    connection = connections[0]
    tenant = connection.tenant_id
    scope = {"connection_id": str(connection.id)}
    # Every step two seconds after the last: Xero's one-second resolution cannot blur them.
    with sandbox_clock() as clock:
        await sync(client, key, org_id, **scope)
        expected = {i["InvoiceID"] for i in ground_truth(sandbox, tenant) if in_scope(i)}
        for action, pick in steps:
            clock.advance(2)
            if action == "sync":
                await sync(client, key, org_id, **scope)
            elif action == "full":
                months_back = MONTHS_BACK[pick % len(MONTHS_BACK)]
                truth = ground_truth(sandbox, tenant)
                result = await sync(
                    client, key, org_id, **scope, incremental="false", months_back=str(months_back)
                )
                assert result["success"], result
                expected |= {i["InvoiceID"] for i in truth if in_scope(i, months_back)}
            else:
                touched = _apply(sandbox, tenant, action, pick)
                if touched:
                    expected.add(touched)
        clock.advance(2)
        result = await sync(client, key, org_id, **scope)
    assert result["success"]
    assert result["connections"][0]["mode"] == "incremental"
    async with session_factory() as session:
        held = set(
            (
                await session.execute(
                    select(Invoice.provider_id).where(Invoice.connection_id == connection.id)
                )
            ).scalars()
        )
    assert expected <= held, sorted(expected - held)
    await assert_matches_truth(session_factory, connection, ground_truth(sandbox, tenant), held)
