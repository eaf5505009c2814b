"""Queries over the store behave as Xero's do: filters, ordering, pages and If-Modified-Since."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx

from src.xero_sandbox.xero_dates import parse_xero_date
from tests.xero_sandbox.conftest import XeroApi


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
