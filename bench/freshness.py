"""The freshness benchmark of issue 13: Xero's webhooks drive targeted syncs.

    uv run python bench/freshness.py [--orgs 50] [--rate 20] [--seconds 60] [--json PATH]

PostgreSQL (`ledgersync_fresh`, dropped and recreated), Redis (db 9: the shared call limiter),
the sandbox in its own process with Xero's limits (real minute) and webhooks on, `ledgersync
serve` (the receiver) and two `ledgersync worker` processes, as in production. N organisations
are connected and fully synced first; then, per scenario, a Xero user makes `--rate` edits a
second for `--seconds` (pay part of an invoice, void one, edit a reference, create one), spread
over the organisations with a skew (Zipf, s=1: a few busy organisations, many quiet ones; the
uniform spread is reported too with --uniform).

- freshness: from the edit's answer at the sandbox to the moment the change is in our database
  (what the API serves), which the benchmark polls every 50 ms;
- Xero calls per change: the sandbox's accounting calls from the load's start until every
  change is visible, over the changes made;
- lost: edited or created invoices whose stored copy differs from Xero's (status, amounts,
  reference, UpdatedDateUTC) once the run is over; must be 0.

Scenario "faults": 5% of deliveries dropped for good, 5% duplicated, 10% held back (reordered),
events shuffled inside batches. What the webhooks miss, the safety net (the relaxed schedule)
must catch within its interval: here the workers run with that interval at 1 minute (the
settings' least) so the run ends in minutes; the report gives the worst freshness of those.

Xero calls per idle connection per day are computed from the settings in force with webhooks on
(SCHEDULE_*_WITH_WEBHOOKS, the nightly sweep) and the calls each of those runs took here."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fleet import (  # noqa: E402
    LEDGERSYNC,
    Tenant,
    Workers,
    connect_all,
    percentile,
    reset_stores,
    settings,
    wait_until_all_ended,
    worker_env,
)
from bench.fleet import query as fleet_query  # noqa: E402
from bench.run import Report  # noqa: E402
from src.core.crypto import TokenCipher  # noqa: E402
from src.core.database import create_engine  # noqa: E402
from src.core.jobs import build_job_app  # noqa: E402
from src.core.migrations import upgrade_database  # noqa: E402
from src.core.settings import Settings  # noqa: E402
from src.domains.external_accounting.base.factory import service_resources  # noqa: E402
from src.domains.external_accounting.base.sync import (  # noqa: E402
    AccountSyncRequest,
    InvoiceSyncRequest,
)
from src.domains.external_accounting.connections.models import Provider  # noqa: E402
from src.domains.external_accounting.syncs.service import SyncsService  # noqa: E402
from src.xero_sandbox.config import SandboxConfig  # noqa: E402
from src.xero_sandbox.server import SandboxProcess, free_port  # noqa: E402

DB_NAME = "ledgersync_fresh"
DATABASE_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{DB_NAME}"
REDIS_URL = "redis://127.0.0.1:6379/9"
KEY = Fernet.generate_key().decode()
WEBHOOK_KEY = "bench-webhook-key-" + uuid.uuid4().hex
POLL_S = 0.05
FAULTS = {
    "drop_rate": 0.05,
    "duplicate_rate": 0.05,
    "reorder_rate": 0.10,
    "shuffle_events": True,
    "seed": 13,
}
OPEN = ("DRAFT", "SUBMITTED", "AUTHORISED")


def _xero_ms(value: str) -> int:
    """`/Date(1733059200000+0000)/` → milliseconds."""
    return int(value[value.index("(") + 1 :].split("+")[0].split(")")[0])


def _exact(response: httpx.Response) -> Any:
    """The sandbox's JSON with money as Decimal (its amounts are exact JSON numbers)."""
    response.raise_for_status()
    return json.loads(response.text, parse_float=Decimal)


async def query(sql: str, **params: Any) -> list[Any]:
    return await fleet_query(sql, database_url=DATABASE_URL, **params)


async def queue_initial(s: Settings, org_ids: list[uuid.UUID]) -> None:
    job_app = build_job_app(s)
    async with job_app.open_async():
        async with service_resources(s, TokenCipher.from_settings(s)) as resources:
            for org_id in org_ids:
                async with resources.session_factory() as session:
                    service = SyncsService(session, resources.factory)
                    for request in (
                        InvoiceSyncRequest(
                            organization_id=org_id, provider=Provider.XERO, incremental=False
                        ),
                        AccountSyncRequest(organization_id=org_id, provider=Provider.XERO),
                    ):
                        await service.queue(request, job_app)
                    await session.commit()


def ground_truth(http: httpx.Client, tenant: str) -> dict[str, dict[str, Any]]:
    """The tenant's invoices at Xero (the sandbox's ground truth), by id."""
    invoices: dict[str, dict[str, Any]] = {}
    while True:
        path = f"/_sandbox/tenants/{tenant}/invoices"
        page = _exact(http.get(path, params={"offset": len(invoices)}))
        invoices.update((i["InvoiceID"], i) for i in page["Invoices"])
        if len(invoices) >= page["total"] or not page["Invoices"]:
            return invoices


# -- the Xero user --------------------------------------------------------------------------------


@dataclass
class Edit:
    tenant_id: str
    invoice_id: str
    updated_ms: int
    at: float  # time.monotonic() when the sandbox answered
    visible_at: float | None = None


@dataclass
class XeroUser:
    """Edits invoices through the sandbox's control API at a steady rate, choosing the
    organisation by a skewed (or uniform) spread and the invoice among those the edit fits."""

    http: httpx.Client
    tenants: list[str]
    rng: random.Random
    uniform: bool
    invoices: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    edits: list[Edit] = field(default_factory=list)
    refused: int = 0

    def load(self) -> None:
        self.invoices = {tenant: ground_truth(self.http, tenant) for tenant in self.tenants}

    def _tenant(self) -> str:
        if self.uniform:
            return self.rng.choice(self.tenants)
        weights = [1 / (i + 1) for i in range(len(self.tenants))]
        return self.rng.choices(self.tenants, weights)[0]

    def edit_one(self) -> None:
        tenant = self._tenant()
        rows = self.invoices[tenant]
        action = self.rng.choices(["pay", "edit", "void", "create"], [35, 35, 10, 20])[0]
        base = f"/_sandbox/tenants/{tenant}/invoices"
        candidates = [
            i
            for i in rows.values()
            if i["Status"] in OPEN
            and (action != "pay" or (i["Status"] == "AUTHORISED" and Decimal(i["AmountDue"]) > 2))
            and (action != "void" or Decimal(i["AmountPaid"]) == 0)
        ]
        if action == "create" or not candidates:
            response = self.http.post(base, json={"status": "AUTHORISED"})
        else:
            invoice = self.rng.choice(candidates)
            path = f"{base}/{invoice['InvoiceID']}"
            if action == "pay":
                part = (Decimal(invoice["AmountDue"]) / 3).quantize(Decimal("0.01"))
                response = self.http.post(f"{path}/pay", json={"amount": str(part)})
            elif action == "edit":
                reference = f"bench {self.rng.randrange(10**9)}"
                response = self.http.post(f"{path}/edit", json={"reference": reference})
            else:
                response = self.http.post(f"{path}/void")
        if response.status_code >= 400:
            self.refused += 1
            return
        invoice = _exact(response)
        rows[invoice["InvoiceID"]] = invoice
        self.edits.append(
            Edit(
                tenant, invoice["InvoiceID"], _xero_ms(invoice["UpdatedDateUTC"]), time.monotonic()
            )
        )

    def run(self, rate: float, seconds: float) -> None:
        started = time.monotonic()
        for n in range(int(rate * seconds)):
            pause = started + n / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            self.edit_one()


class Watcher:
    """Polls our database for the edits not yet visible; notes when each became visible."""

    def __init__(self) -> None:
        self.pending: dict[str, Edit] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._loop()), daemon=True)

    def add(self, edit: Edit) -> None:
        with self.lock:
            # The latest edit of an invoice is the one to see (an earlier one is implied).
            earlier = self.pending.get(edit.invoice_id)
            if earlier is not None and earlier.updated_ms <= edit.updated_ms:
                earlier.visible_at = -1.0  # superseded before it was seen: not measured
            self.pending[edit.invoice_id] = edit

    async def _loop(self) -> None:
        engine = create_engine(DATABASE_URL)
        try:
            while not self._stop.is_set():
                with self.lock:
                    ids = list(self.pending)
                if ids:
                    async with engine.connect() as connection:
                        rows = (
                            await connection.execute(
                                text(
                                    "SELECT provider_id, provider_updated_at FROM invoices "
                                    "WHERE provider_id = ANY(:ids)"
                                ),
                                {"ids": ids},
                            )
                        ).all()
                    now = time.monotonic()
                    with self.lock:
                        for provider_id, updated in rows:
                            edit = self.pending.get(provider_id)
                            if edit and updated.timestamp() * 1000 >= edit.updated_ms - 0.5:
                                edit.visible_at = now
                                del self.pending[provider_id]
                await asyncio.sleep(POLL_S)
        finally:
            await engine.dispose()

    def start(self) -> None:
        self._thread.start()

    def wait_empty(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if not self.pending:
                    return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def lost_changes(http: httpx.Client, edits: list[Edit]) -> int:
    """Edited invoices whose stored copy differs from Xero's ground truth."""
    truth: dict[str, dict[str, Any]] = {}
    for tenant in {e.tenant_id for e in edits}:
        truth.update(ground_truth(http, tenant))
    ids = sorted({e.invoice_id for e in edits})
    rows = asyncio.run(
        query(
            "SELECT provider_id, status, amount_due, amount_paid, total, reference, "
            "provider_updated_at FROM invoices WHERE provider_id = ANY(:ids)",
            ids=ids,
        )
    )
    stored = {r[0]: r for r in rows}
    lost = 0
    for invoice_id in ids:
        xero, ours = truth[invoice_id], stored.get(invoice_id)
        if ours is None or (
            ours[1] != xero["Status"]
            or ours[2] != Decimal(xero["AmountDue"])
            or ours[3] != Decimal(xero["AmountPaid"])
            or ours[4] != Decimal(xero["Total"])
            or (ours[5] or "") != (xero.get("Reference") or "")
            or int(ours[6].timestamp() * 1000) != _xero_ms(xero["UpdatedDateUTC"])
        ):
            lost += 1
    return lost


# -- processes --------------------------------------------------------------------------------


class Service:
    """`ledgersync serve` (the webhook receiver) and the workers, on one environment."""

    def __init__(self, env: dict[str, str], workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Its access log (a line per delivery) goes to a file, not the benchmark's output.
        self.log = tempfile.NamedTemporaryFile("w", prefix="freshness-serve-", suffix=".log")
        self.api = subprocess.Popen(
            [str(LEDGERSYNC), "serve", "--port", str(self.port)],
            cwd=ROOT,
            env={**os.environ, **env, "PUBLIC_BASE_URL": self.url},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.workers = Workers(workers, env)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("ledgersync serve did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        self.workers.stop()
        self.api.terminate()
        self.api.wait(timeout=60)
        self.log.close()


# Freshness target, and the part of it no client can spend on coalescing: the sandbox's webhook
# batch window (Xero's own batching; the real Xero takes longer).
FRESHNESS_TARGET_S = 3.0
XERO_BATCH_S = 0.5


def batching_floor(edits: list[Edit], window_s: float) -> int:
    """The fewest calls that fetch every edit within `window_s` of it being made, knowing
    every edit in advance (an oracle): per organisation, a call covers the edits made in the
    `window_s` before it (Xero's calls are per tenant), and the greedy cover (each call as late
    as the earliest uncovered edit allows) is the least number of such windows."""
    times: dict[str, list[float]] = {}
    for edit in edits:
        times.setdefault(edit.tenant_id, []).append(edit.at)
    calls = 0
    for moments in times.values():
        moments.sort()
        covered_until = float("-inf")
        for moment in moments:
            if moment > covered_until:
                calls += 1
                covered_until = moment + window_s
    return calls


def scenario(
    name: str,
    report: Report,
    sandbox: SandboxProcess,
    user: XeroUser,
    args: argparse.Namespace,
    *,
    drain_s: float,
) -> None:
    v = report.values
    with httpx.Client(base_url=sandbox.base_url, timeout=60) as http:
        http.post("/_sandbox/stats/reset").raise_for_status()
        before = http.get("/_sandbox/webhooks").json()
        watcher = Watcher()
        watcher.start()
        user.edits = []
        edits_before = 0
        started = time.monotonic()
        feeder_stop = threading.Event()

        def feed() -> None:
            seen = edits_before
            while not feeder_stop.is_set() or seen < len(user.edits):
                while seen < len(user.edits):
                    watcher.add(user.edits[seen])
                    seen += 1
                time.sleep(0.01)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        user.run(args.rate, args.seconds)
        feeder_stop.set()
        feeder.join()
        drained = watcher.wait_empty(drain_s)
        took = time.monotonic() - started
        watcher.stop()
        calls = int(http.get("/_sandbox/stats").json()["total"])
        after = http.get("/_sandbox/webhooks").json()
        lost = lost_changes(http, user.edits)
    measured = [e for e in user.edits if e.visible_at is not None and e.visible_at >= 0]
    latencies = [e.visible_at - e.at for e in measured if e.visible_at is not None]
    changes = len(user.edits)
    counters = after.get("counters", after)
    dropped = int(counters.get("dropped", 0)) - int(
        before.get("counters", before).get("dropped", 0)
    )
    report.add(f"{name}: changes made (refused edits: {user.refused})", changes, None, "")
    report.add(f"{name}: webhook deliveries dropped by the sandbox", dropped, None, "")
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    report.add(f"{name}: freshness p50 (edit -> in our database)", p50, None, "s", f"{name}_p50_s")
    target = FRESHNESS_TARGET_S if name == "clean" else None
    report.add(f"{name}: freshness p95", p95, target, "s", f"{name}_p95_s")
    report.add(
        f"{name}: freshness max", max(latencies) if latencies else None, None, "s", f"{name}_max_s"
    )
    report.add(f"{name}: all visible within the drain", 1.0 if drained else 0.0, 1.0, "")
    report.add(
        f"{name}: Xero calls per change",
        calls / changes if changes else None,
        0.2 if name == "clean" else None,
        "",
        f"{name}_calls_per_change",
    )
    if name == "clean" and changes:
        # What any client could reach: every edit visible within the target, with nothing but
        # Xero's batching spent before the call (no job start, no fetch, no write).
        floor = batching_floor(user.edits, FRESHNESS_TARGET_S - XERO_BATCH_S)
        report.add(
            f"{name}: oracle floor, calls per change at p100 <= {FRESHNESS_TARGET_S:g} s",
            floor / changes,
            0.2,
            "",
            f"{name}_oracle_calls_per_change",
        )
    report.add(f"{name}: changes lost (ground-truth diff)", lost, None, "", f"{name}_lost")
    v[f"{name}_changes"] = changes
    v[f"{name}_calls"] = calls
    v[f"{name}_took_s"] = took
    v[f"{name}_dropped_deliveries"] = dropped


def idle_calls_per_day(report: Report, s: Settings) -> None:
    """Calls an idle connection costs a day with webhooks on: one call per incremental
    invoice sync and per accounts sync (measured: the runs of an idle connection below), times
    how often the relaxed schedule runs them, plus the nightly sweep's calls."""
    rows = asyncio.run(
        query(
            "SELECT object_type, mode, avg(api_calls), count(*) FROM sync_runs "
            "WHERE status = 'success' AND trigger = 'schedule' GROUP BY object_type, mode"
        )
    )
    per_run = {(r[0], r[1]): float(r[2]) for r in rows}
    invoices = per_run.get(("invoices", "incremental"), 1.0)
    accounts = per_run.get(("accounts", "full"), 1.0)
    day = 24 * 60
    total = (
        invoices * day / s.schedule_invoices_minutes_with_webhooks
        + accounts * day / s.schedule_accounts_minutes_with_webhooks
    )
    sweep = asyncio.run(
        query(
            "SELECT avg(api_calls) FROM sync_runs WHERE mode = 'reconcile' AND status = 'success'"
        )
    )
    sweep_calls = float(sweep[0][0]) if sweep and sweep[0][0] is not None else None
    report.add("idle: calls per incremental / accounts sync", invoices, None, "")
    if sweep_calls is not None:
        total += sweep_calls
        report.add("idle: calls per nightly sweep (measured)", sweep_calls, None, "")
    report.add("idle: Xero calls per idle connection per day", total, 30, "", "idle_calls_per_day")


def run(args: argparse.Namespace) -> Report:
    report = Report()
    v = report.values
    v.update(orgs=args.orgs, rate=args.rate, seconds=args.seconds, workers=args.workers)
    v.update(coalesce_seconds=args.coalesce_seconds, uniform=args.uniform)
    reset_stores(DB_NAME, REDIS_URL)
    upgrade_database(DATABASE_URL)
    sandbox = SandboxProcess(SandboxConfig(tenants=0, limits_enabled=True, seed=args.seed))
    service: Service | None = None
    try:
        with httpx.Client(base_url=sandbox.base_url, timeout=120) as http:
            tenants = [
                Tenant(
                    http.post("/_sandbox/tenants", json={"invoices": args.invoices}).json()[
                        "tenant_id"
                    ],
                    args.invoices,
                )
                for _ in range(args.orgs)
            ]
        s = settings(
            sandbox.base_url,
            1.0,
            database_url=DATABASE_URL,
            redis_url=REDIS_URL,
            token_encryption_keys=KEY,
        )
        org_ids = asyncio.run(connect_all(s, sandbox.base_url, tenants))
        env = worker_env(
            s,
            XERO_WEBHOOK_KEY=WEBHOOK_KEY,
            JOB_CONCURRENCY=str(args.concurrency),
            WEBHOOK_COALESCE_SECONDS=str(args.coalesce_seconds),
        )
        service = Service(env, args.workers)
        with httpx.Client(base_url=sandbox.base_url, timeout=60) as http:
            http.put(
                "/_sandbox/webhooks",
                json={
                    "url": f"{service.url}/external-accounting/xero/webhooks",
                    "key": WEBHOOK_KEY,
                    "enabled": True,
                },
            ).raise_for_status()
            check = http.post("/_sandbox/webhooks/intent-to-receive").json()
        report.add("intent to receive passed", 1.0 if check["passed"] else 0.0, 1.0, "")
        asyncio.run(queue_initial(s, org_ids))
        wait_until_all_ended(args.timeout, DATABASE_URL)
        with httpx.Client(base_url=sandbox.base_url, timeout=120) as http:
            user = XeroUser(
                http, [t.tenant_id for t in tenants], random.Random(args.seed), args.uniform
            )
            user.load()
            scenario("clean", report, sandbox, user, args, drain_s=30)

            # Faults on, and the safety net at its least interval, so a dropped delivery is
            # caught within the run.
            service.stop()
            service = None
            env_net = {
                **env,
                "SCHEDULE_INVOICES_MINUTES_WITH_WEBHOOKS": "1",
                "SCHEDULE_ACCOUNTS_MINUTES_WITH_WEBHOOKS": "60",
            }
            service = Service(env_net, args.workers)
            http.put(
                "/_sandbox/webhooks",
                json={"url": f"{service.url}/external-accounting/xero/webhooks", "faults": FAULTS},
            ).raise_for_status()
            scenario("faults", report, sandbox, user, args, drain_s=150)
        idle_calls_per_day(report, s)
    finally:
        if service is not None:
            service.stop()
        sandbox.stop()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orgs", type=int, default=50)
    parser.add_argument("--invoices", type=int, default=300, help="invoices per organisation")
    parser.add_argument("--rate", type=float, default=20.0, help="edits a second")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each load")
    parser.add_argument("--uniform", action="store_true", help="spread edits evenly")
    parser.add_argument(
        "--coalesce-seconds",
        type=float,
        default=Settings().webhook_coalesce_seconds,
        help="WEBHOOK_COALESCE_SECONDS: fewer calls per change for staler data",
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=10, help="jobs per worker")
    parser.add_argument("--timeout", type=float, default=600, help="limit on the initial syncs")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument("--quick", action="store_true", help="10 organisations, 20 s loads")
    args = parser.parse_args()
    if args.quick:
        args.orgs, args.seconds, args.rate = 10, 20.0, 10.0
    started = time.perf_counter()
    report = run(args)
    report.print()
    took = time.perf_counter() - started
    spread = "uniform" if args.uniform else "Zipf"
    print(f"\n{args.orgs} organisations, {args.rate:g} edits/s ({spread}), took {took:.0f} s")
    if args.json:
        report.values["took_s"] = took
        report.values["spread"] = spread
        report.values["at"] = datetime.now(UTC).isoformat()
        args.json.write_text(json.dumps(report.values, indent=2, default=str))


if __name__ == "__main__":
    main()
