"""`ledgersync demo`: the whole product on the embedded defaults, against the Xero sandbox.

Starts the sandbox, migrates the SQLite database, creates an organisation and an admin, connects
two Xero tenants through the real OAuth flow (the sandbox auto-approves the consent), then runs a
full invoice sync, lets a Xero user change a few invoices, runs an incremental sync and an
accounts sync, then a full invoice sync in the background (`background=true`: 202 and queued runs,
which the app's in-process worker runs, as `serve` does on SQLite) followed at `GET
/sync-runs/{id}` with a progress bar, and prints the results and what is now in the database.

It explains what it shows: each connection's run id and counts; why the full sync stored fewer
invoices than each Xero organisation has (its `months_back` window: the window's first day and
how many invoices lie outside it, read from the sandbox's own books); what `unchanged` means in
the incremental sync. `--json` carries the same as added fields (`window`, `explanation`)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy import func, select

from src.core.database import create_engine, create_session_factory
from src.core.migrations import upgrade_database
from src.core.settings import Settings
from src.domains.external_accounting.base.sync import months_ago
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.ledger.models import (
    INVOICE_TYPES,
    Account,
    Invoice,
    InvoiceLineItem,
)
from src.domains.organizations.service import OrganizationService
from src.main import create_app
from src.xero_sandbox.config import SandboxConfig
from src.xero_sandbox.server import RunningSandbox
from src.xero_sandbox.xero_dates import parse_xero_date

# Older than the window, a full sync still fetches the invoices in this status (phase 2).
OUTSTANDING = "AUTHORISED"


def demo_settings(base_url: str, sandbox: SandboxConfig) -> Settings:
    """The embedded defaults, with every Xero URL pointed at the sandbox."""
    return Settings(**sandbox.client_settings(base_url), log_level="WARNING")


@contextmanager
def _steps(console: Console, enabled: bool) -> Iterator[Any]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    ) as progress:
        yield progress


async def _run(invoices: int, as_json: bool) -> list[dict[str, Any]]:
    console = Console(stderr=True)
    sandbox_config = SandboxConfig(tenants=2, invoices=invoices, auto_approve=True, seed=7)
    results: list[dict[str, Any]] = []
    with RunningSandbox(sandbox_config) as sandbox, _steps(console, not as_json) as progress:
        settings = demo_settings(sandbox.base_url, sandbox_config)
        step = progress.add_task("Migrating the database", total=8)
        await asyncio.to_thread(upgrade_database, settings.database_url)
        engine = create_engine(settings.database_url)
        factory = create_session_factory(engine)

        progress.update(step, description="An organisation and an admin", advance=1)
        async with factory() as session:
            organizations = OrganizationService(session)
            # Run again on the same database, the demo takes its own organisation back: a Xero
            # organisation is held by one ledgersync organisation at a time.
            organization = await organizations.organization_named("Demo Co")
            _, issued = await organizations.add_user(
                f"admin+{int(time.time())}@demo.test", organization.id, "admin"
            )
            await session.commit()
        headers = {"Authorization": f"Bearer {issued.key}"}
        org = {"org_id": str(organization.id)}

        app = create_app(settings)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://ledgersync", timeout=120
            ) as api,
            httpx.AsyncClient(timeout=30) as browser,
        ):
            progress.update(step, description="Connecting Xero (OAuth 2.0 + PKCE)", advance=1)
            start = await api.get("/external-accounting/xero/connect", params=org, headers=headers)
            consent = await browser.get(start.headers["location"])
            back = parse_qs(urlparse(consent.headers["location"]).query)
            connected = await api.get(  # the API flow: finished with the key that started it
                "/external-accounting/xero/callback",
                params={k: v[0] for k, v in back.items()},
                headers=headers,
            )
            connected.raise_for_status()

            progress.update(step, description="Full invoice sync", advance=1)
            full = await _sync(api, headers, {**org, "incremental": "false"}, "invoices")
            # Read before the Xero user's edits: the books this sync saw.
            full.update(await _window(api, headers, org, sandbox, full))
            results.append(full)

            progress.update(
                step, description="A Xero user pays, voids and creates invoices", advance=1
            )
            _edit_books(sandbox)

            progress.update(step, description="Incremental invoice sync", advance=1)
            incremental = await _sync(api, headers, {**org, "incremental": "true"}, "invoices")
            incremental["explanation"] = _incremental_explained(incremental)
            results.append(incremental)

            progress.update(step, description="Accounts sync", advance=1)
            results.append(await _sync(api, headers, org, "accounts"))

            progress.update(
                step, description="Background full invoice sync (queued, run by the app)", advance=1
            )
            first = results[0]["connections"]
            expected = {c["connection_id"]: (c["tenant_name"], c["count"]) for c in first}
            results.append(await _background_sync(api, headers, org, progress, expected))
            progress.update(step, description="Done", advance=1)

        summary = await _summary(factory, organization.id)
        await engine.dispose()
    if as_json:
        for result in results:
            sys.stdout.write(json.dumps(result) + "\n")
    else:
        _print(Console(), results, summary, settings.database_url)
    return results


async def _sync(
    api: httpx.AsyncClient, headers: dict[str, str], params: dict[str, str], what: str
) -> dict[str, Any]:
    response = await api.post(f"/external-accounting/{what}/sync", params=params, headers=headers)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


ENDED = ("success", "failed", "cancelled")


async def _background_sync(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    org: dict[str, str],
    progress: Progress,
    expected: dict[str, tuple[str, int]],
) -> dict[str, Any]:
    """POST a background full sync (202 at once), then follow each queued run at `GET
    /sync-runs/{id}` with a bar (invoices so far, of about what the first full sync found) until
    it ends; one result line for the lot, with the runs as they ended."""
    queued = await api.post(
        "/external-accounting/invoices/sync",
        params={**org, "incremental": "false", "background": "true"},
        headers=headers,
    )
    queued.raise_for_status()
    assert queued.status_code == 202, queued.text
    runs: dict[str, dict[str, Any]] = {r["id"]: r for r in queued.json()["sync_runs"]}
    names = {run_id: expected[run["connection_id"]][0] for run_id, run in runs.items()}
    bars: dict[str, TaskID] = {
        run_id: progress.add_task(
            f"  {names[run_id]}: queued", total=expected[run["connection_id"]][1] or None
        )
        for run_id, run in runs.items()
    }
    deadline = time.monotonic() + 120
    while True:
        for run_id in runs:
            response = await api.get(
                f"/external-accounting/sync-runs/{run_id}", params=org, headers=headers
            )
            response.raise_for_status()
            run = runs[run_id] = response.json()
            phase = f", phase {run['phase']}" if run["phase"] else ""
            total = expected[run["connection_id"]][1]
            progress.update(
                bars[run_id],
                description=f"  {names[run_id]}: {run['status']}, pages {run['pages']}{phase}",
                completed=run["count"],
                # About what the first full sync found; exactly what this one found once ended.
                total=run["count"] if run["status"] in ENDED else max(total, run["count"]) or None,
            )
        if all(run["status"] in ENDED for run in runs.values()):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the background sync did not end: {list(runs.values())}")
        await asyncio.sleep(0.1)
    return {
        "object_type": "invoices",
        "background": True,
        "success": all(run["status"] == "success" for run in runs.values()),
        "count": sum(run["count"] for run in runs.values()),
        "sync_runs": list(runs.values()),
    }


async def _window(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    org: dict[str, str],
    sandbox: RunningSandbox,
    full: dict[str, Any],
) -> dict[str, Any]:
    """Why the full sync stored fewer invoices than Xero has: per connection, its window (the
    run's `months_back`, counted back from the day it started), and the sandbox's own books
    counted against it. Older invoices are fetched only while outstanding (AUTHORISED); the
    rest lie outside the window. The fields `window` and `explanation` of the JSON line."""
    listed = await api.get("/external-accounting/connections", params=org, headers=headers)
    listed.raise_for_status()
    tenant_of = {c["id"]: c["tenant_id"] for c in listed.json()}
    explained: list[dict[str, Any]] = []
    sentences: list[str] = []
    months_back = 12
    for connection in full["connections"]:
        run_id = connection["sync_run_id"]
        response = await api.get(
            f"/external-accounting/sync-runs/{run_id}", params=org, headers=headers
        )
        response.raise_for_status()
        run = response.json()
        months_back = int(run["params"].get("months_back", 12))
        started = datetime.fromisoformat(run["started_at"]).astimezone(UTC).date()
        start = months_ago(started, months_back)
        books = _books(sandbox, tenant_of[connection["connection_id"]])
        before = [i for i in books if _dated(i) < start]
        outstanding = sum(1 for i in before if i["Status"] == OUTSTANDING)
        outside = len(before) - outstanding
        explained.append(
            {
                "connection_id": connection["connection_id"],
                "tenant_name": connection["tenant_name"],
                "sync_run_id": run_id,
                "months_back": months_back,
                "window_start": start.isoformat(),
                "invoices_at_xero": len(books),
                "in_window": len(books) - len(before),
                "older_outstanding": outstanding,
                "outside_window": outside,
                "stored": connection["count"],
            }
        )
        sentences.append(
            f"{connection['tenant_name']} has {len(books)} invoices at Xero; the full sync "
            f"(run {run_id}) fetched the {len(books) - len(before)} dated from {start} "
            f"(months_back={months_back}) and the {outstanding} older ones still outstanding "
            f"({OUTSTANDING}); the other {outside}, older and not outstanding (paid, voided, "
            f"deleted, drafts), lie outside the window: {connection['count']} stored. A larger "
            "months_back "
            "(`ledgersync sync invoices --full --months-back N`) fetches more."
        )
    return {
        "window": {"months_back": months_back, "connections": explained},
        "explanation": sentences,
    }


def _books(sandbox: RunningSandbox, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's invoices of the types a sync asks for, as the sandbox holds them."""
    url = f"{sandbox.base_url}/_sandbox/tenants/{tenant_id}/invoices"
    invoices: list[dict[str, Any]] = httpx.get(url, params={"limit": 10_000}).json()["Invoices"]
    return [i for i in invoices if i["Type"] in INVOICE_TYPES]


def _dated(invoice: dict[str, Any]) -> date:
    return parse_xero_date(invoice["Date"]).date()


def _incremental_explained(result: dict[str, Any]) -> list[str]:
    """What the incremental sync's numbers mean."""
    return [
        f"{c['tenant_name']} (run {c['sync_run_id']}): created={c['created']} and "
        f"updated={c['updated']} are the invoices the Xero user changed since the full sync "
        "(a payment, a void, a new invoice): updated ones were stored, created ones were not "
        "(the new one, and an edited invoice older than the full sync's window); "
        f"unchanged={c['unchanged']} are invoices Xero sent again that are stored exactly as "
        "they are (same UpdatedDateUTC): an incremental sync asks for what was modified since "
        "its cursor less one second, so it re-reads the last invoices it already has rather "
        "than miss one modified in that second. They are not in count."
        for c in result["connections"]
    ]


def _edit_books(sandbox: RunningSandbox) -> None:
    """What a Xero user does between two syncs: pay one invoice, void another, raise a new one."""
    for tenant in list(sandbox.runtime.store.tenants.values()):
        base = f"{sandbox.base_url}/_sandbox/tenants/{tenant.tenant_id}/invoices"
        truth = httpx.get(base, params={"limit": 10_000}).json()["Invoices"]
        authorised = [i for i in truth if i["Status"] == "AUTHORISED"]
        submitted = [i for i in truth if i["Status"] == "SUBMITTED"]
        if authorised:
            httpx.post(f"{base}/{authorised[0]['InvoiceID']}/pay").raise_for_status()
        if submitted:
            httpx.post(f"{base}/{submitted[0]['InvoiceID']}/void").raise_for_status()
        httpx.post(base, json={"status": "AUTHORISED", "lines": 3}).raise_for_status()


async def _summary(factory: Any, organization_id: Any) -> list[tuple[Any, ...]]:
    async with factory() as session:
        rows = await session.execute(
            select(
                Connection.tenant_name,
                Invoice.status,
                func.count(Invoice.id),
                func.sum(Invoice.total),
                func.sum(Invoice.amount_due),
            )
            .join(Invoice, Invoice.connection_id == Connection.id)
            .where(Connection.organization_id == organization_id)
            .group_by(Connection.tenant_name, Invoice.status)
            .order_by(Connection.tenant_name, Invoice.status)
        )
        summary = [tuple(row) for row in rows]
        lines = (
            await session.execute(
                select(func.count())
                .select_from(InvoiceLineItem)
                .join(Invoice)
                .where(Invoice.organization_id == organization_id)
            )
        ).scalar_one()
        accounts = (
            await session.execute(
                select(func.count(Account.id)).where(Account.organization_id == organization_id)
            )
        ).scalar_one()
    return [
        *summary,
        ("(all)", "line items", lines, None, None),
        ("(all)", "accounts", accounts, None, None),
    ]


def _print(
    console: Console, results: list[dict[str, Any]], summary: list[tuple[Any, ...]], url: str
) -> None:
    *synced, background = results
    for title, result in zip(
        ("Full invoice sync", "Incremental invoice sync", "Accounts sync"), synced, strict=True
    ):
        shown = {
            k: v for k, v in result.items() if k not in ("connections", "window", "explanation")
        }
        console.rule(title)
        console.print_json(json.dumps(shown))
        runs = Table(box=None)
        for column in ("Xero organisation", "mode", "count", "created", "updated", "unchanged"):
            runs.add_column(column, no_wrap=True)
        for c in result["connections"]:
            runs.add_row(
                c["tenant_name"],
                c["mode"],
                *(str(c[k]) for k in ("count", "created", "updated", "unchanged")),
            )
        console.print(runs)
        for c in result["connections"]:
            console.print(f"  run {c['sync_run_id']}: {c['tenant_name']}", soft_wrap=True)
        for sentence in result.get("explanation", []):
            console.print(f"  {sentence}")
    console.rule("Background full invoice sync: its runs, as GET /sync-runs/{id} shows them")
    for run in background["sync_runs"]:
        console.print_json(json.dumps(run))
    table = Table(title=f"Now in the database ({url})")
    for column in ("Xero organisation", "status", "rows", "total (mixed currencies)", "amount due"):
        table.add_column(column, justify="right" if column != "Xero organisation" else "left")
    for tenant, status, count, total, due in summary:
        table.add_row(
            str(tenant),
            str(status),
            str(count),
            "" if total is None else f"{total:,.2f}",
            "" if due is None else f"{due:,.2f}",
        )
    console.print(table)


def run_demo(invoices: int = 2000, as_json: bool = False) -> list[dict[str, Any]]:
    """Run the demo and return the SyncResults (and, last, the background sync's runs)."""
    return asyncio.run(_run(invoices, as_json))
