"""The generated data is deterministic, realistic and internally consistent; filters, ordering,
If-Modified-Since and mutations behave as Xero's do."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime

import httpx

from src.xero_sandbox.records import STATUSES, InvoiceRecord
from src.xero_sandbox.store import SandboxStore
from src.xero_sandbox.xero_dates import parse_xero_date
from tests.xero_sandbox.conftest import XeroApi


def _decimal(value: object) -> Decimal:
    return Decimal(str(value))


def test_same_seed_same_data_other_seed_other_data() -> None:
    one, two, other = (SandboxStore.generate(1, 50, seed) for seed in (7, 7, 8))

    def first(store: SandboxStore) -> InvoiceRecord:
        return next(iter(store.tenants.values())).invoice(10)

    assert first(one) == first(two)
    assert first(one).invoice_id != first(other).invoice_id


def test_invoices_are_varied_and_their_totals_add_up() -> None:
    tenant = next(iter(SandboxStore.generate(1, 2000, 7).tenants.values()))
    records = [tenant.invoice(i) for i in range(tenant.invoice_count)]
    assert set(Counter(r.status for r in records)) == set(STATUSES)
    assert {r.type for r in records} == {"ACCREC", "ACCPAY"}
    assert len({r.currency_code for r in records}) >= 3
    assert {len(r.lines) for r in records} >= {1, 2, 3, 5}
    assert max(r.date_day for r in records) - min(r.date_day for r in records) > 4 * 365
    assert any(r.status == "AUTHORISED" and 0 < r.amount_paid < r.total for r in records)
    assert any(r.amount_credited > 0 for r in records)
    assert any(line.tracking for r in records for line in r.lines)
    for r in records:
        assert r.total == r.sub_total + r.total_tax
        if r.status == "PAID":
            assert r.amount_due == 0
            assert r.fully_paid_day is not None
        elif r.status not in ("VOIDED", "DELETED"):
            assert r.amount_due == r.total - r.amount_paid - r.amount_credited


def test_generation_scales_without_materialising_invoices() -> None:
    store = SandboxStore.generate(1, 200_000, 7)
    tenant = next(iter(store.tenants.values()))
    assert tenant.invoice_count == 200_000
    assert tenant.overrides == {}
    assert tenant.index_of(tenant.invoice(199_999).invoice_id) == 199_999


def test_filters_match_a_brute_force_scan(xero: XeroApi) -> None:
    everything = xero.get("/Invoices").json()["Invoices"]
    cutoff = datetime(2024, 1, 1, tzinfo=UTC)
    expected = {
        i["InvoiceID"]
        for i in everything
        if i["Type"] == "ACCREC" and (parse_xero_date(i["Date"]) >= cutoff or i["Status"] == "PAID")
    }
    where = 'Type=="ACCREC" AND (Date>=DateTime(2024,01,01) OR Status=="PAID")'
    found = xero.get("/Invoices", params={"where": where}).json()["Invoices"]
    assert {i["InvoiceID"] for i in found} == expected
    statuses = xero.get("/Invoices", params={"Statuses": "DRAFT,VOIDED"}).json()["Invoices"]
    assert {i["Status"] for i in statuses} == {"DRAFT", "VOIDED"}
    assert len(statuses) == sum(i["Status"] in ("DRAFT", "VOIDED") for i in everything)
    wanted = [everything[3]["InvoiceID"], everything[7]["InvoiceID"]]
    by_id = xero.get("/Invoices", params={"IDs": ",".join(wanted)}).json()["Invoices"]
    assert sorted(i["InvoiceID"] for i in by_id) == sorted(wanted)


def test_order_and_pages_cover_everything_once(xero: XeroApi) -> None:
    seen: list[dict[str, object]] = []
    for page in (1, 2, 3, 4):
        body = xero.get(
            "/Invoices", params={"page": page, "pageSize": 100, "order": "UpdatedDateUTC ASC"}
        ).json()
        seen += body["Invoices"]
    assert len(seen) == 300
    assert len({i["InvoiceID"] for i in seen}) == 300
    stamps = [parse_xero_date(str(i["UpdatedDateUTC"])) for i in seen]
    assert stamps == sorted(stamps)
    assert xero.get("/Invoices", params={"order": "Reference"}).status_code == 400


def test_if_modified_since_returns_changes_at_or_after_the_second(xero: XeroApi) -> None:
    base = xero.sandbox.base_url
    tenant = xero.tenant
    draft = httpx.post(
        f"{base}/_sandbox/tenants/{tenant}/invoices", json={"status": "DRAFT"}
    ).json()
    updated = parse_xero_date(draft["UpdatedDateUTC"])
    header = {"If-Modified-Since": format_datetime(updated.replace(microsecond=0), usegmt=True)}
    changed = xero.get("/Invoices", params={"page": 1}, headers=header).json()["Invoices"]
    assert draft["InvoiceID"] in {i["InvoiceID"] for i in changed}
    later = {"If-Modified-Since": (updated + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")}
    assert xero.get("/Invoices", params={"page": 1}, headers=later).json()["Invoices"] == []
    assert xero.get("/Invoices", headers={"If-Modified-Since": "yesterday"}).status_code == 400


def test_mutations_follow_xeros_rules_and_bump_updated_date(xero: XeroApi) -> None:
    base, tenant = xero.sandbox.base_url, xero.tenant
    invoices = f"{base}/_sandbox/tenants/{tenant}/invoices"
    draft = httpx.post(invoices, json={"status": "DRAFT", "lines": 3}).json()
    invoice_id = draft["InvoiceID"]
    assert len(draft["LineItems"]) == 3
    authorised = httpx.post(f"{invoices}/{invoice_id}/authorise").json()
    assert authorised["Status"] == "AUTHORISED"
    assert parse_xero_date(authorised["UpdatedDateUTC"]) > parse_xero_date(draft["UpdatedDateUTC"])
    part = httpx.post(f"{invoices}/{invoice_id}/pay", json={"amount": "10.00"}).json()
    assert _decimal(part["AmountPaid"]) == Decimal("10.00")
    assert _decimal(part["AmountDue"]) == _decimal(part["Total"]) - Decimal("10.00")
    refused = httpx.post(f"{invoices}/{invoice_id}/void")
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_mutation"
    paid = httpx.post(f"{invoices}/{invoice_id}/pay").json()
    assert paid["Status"] == "PAID"
    assert _decimal(paid["AmountDue"]) == 0
    assert "FullyPaidOnDate" in paid
    over = httpx.post(f"{invoices}/{invoice_id}/pay", json={"amount": "1"})
    assert over.status_code == 400
    assert httpx.post(f"{invoices}/{invoice_id}/delete").status_code == 400
    gone = httpx.post(invoices, json={"status": "DRAFT"}).json()
    deleted = httpx.post(f"{invoices}/{gone['InvoiceID']}/delete").json()
    assert deleted["Status"] == "DELETED"
    # The accounting API sees the same invoice.
    seen = xero.get(f"/Invoices/{invoice_id}").json()["Invoices"][0]
    assert seen["Status"] == "PAID"
    assert httpx.post(f"{invoices}/not-an-id/pay").status_code == 404
    assert httpx.post(f"{base}/_sandbox/tenants/nope/invoices", json={}).status_code == 404
    assert httpx.post(invoices, json={"status": "PAID"}).status_code == 422


def test_ground_truth_lists_every_invoice_with_line_items(xero: XeroApi) -> None:
    base, tenant = xero.sandbox.base_url, xero.tenant
    truth = httpx.get(f"{base}/_sandbox/tenants/{tenant}/invoices", params={"limit": 500}).json()
    assert truth["total"] == 300 == len(truth["Invoices"])
    assert all(i["LineItems"] for i in truth["Invoices"])
    touched = httpx.post(
        f"{base}/_sandbox/tenants/{tenant}/invoices/touch", json={"count": 3}
    ).json()
    assert touched == {"touched": 3}
