"""The fleet benchmark of issue 12: N connected Xero organisations kept fresh by background jobs.

    uv run python bench/fleet.py [--orgs 1000] [--quick] [--json PATH] [--workers 2]

PostgreSQL (`ledgersync_fleet`, dropped and recreated), Redis (db 8, flushed: the shared call
limiter), the sandbox in its own process with Xero's limits on, N organisations of a seeded,
skewed (log-normal, clipped) number of invoices, and `ledgersync worker` processes.

Phase 1 queues the initial syncs (full invoices + accounts) of every connection at once through
`SyncsService.queue` and waits for all to end. Phase 2 restarts the workers with compressed
schedules (invoices every minute, accounts every 4 minutes: Xero's 15/60 minutes at
`--time-scale 15`, which also compresses the sandbox's minute and day, and the scheduler's
one-minute tick, by 15) and lets the
schedules alone run for `--day-minutes` real minutes, while a Xero user edits a few invoices.
Every number is measured in the run that prints it."""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import redis
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import Report  # noqa: E402
from src.core.crypto import TokenCipher  # noqa: E402
from src.core.database import create_engine, create_session_factory, utcnow  # noqa: E402
from src.core.jobs import build_job_app  # noqa: E402
from src.core.migrations import upgrade_database  # noqa: E402
from src.core.settings import Settings  # noqa: E402
from src.domains.external_accounting.base.factory import service_resources  # noqa: E402
from src.domains.external_accounting.base.sync import (  # noqa: E402
    AccountSyncRequest,
    InvoiceSyncRequest,
    months_ago,
)
from src.domains.external_accounting.connections.models import (  # noqa: E402
    Connection,
    OAuthGrant,
    Provider,
)
from src.domains.external_accounting.schedules.service import (  # noqa: E402
    latest_slot,
    spread_offset,
)
from src.domains.external_accounting.syncs.service import SyncsService  # noqa: E402
from src.domains.organizations.models import Organization  # noqa: E402
from src.xero_sandbox.config import SandboxConfig  # noqa: E402
from src.xero_sandbox.server import SandboxProcess  # noqa: E402

DB_NAME = "ledgersync_fleet"
DATABASE_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{DB_NAME}"
PSYCOPG_URL = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"
REDIS_URL = "redis://127.0.0.1:6379/8"
KEY = Fernet.generate_key().decode()
MONTHS_BACK = 12  # InvoiceSyncRequest's default: what a first sync through the API extracts
APP_MINUTE_LIMIT = 10_000
TENANT_MINUTE_LIMIT = 60
# The scheduler's intervals in phase 2, in real minutes (the settings' unit and least value).
INVOICES_EVERY_MIN = 1
ACCOUNTS_EVERY_MIN = 4
DAY_LATENCY_TARGET_S = 2.0
LEDGERSYNC = Path(sys.executable).parent / "ledgersync"

# Bench-only: Procrastinate deletes a job (and, by cascade, its events) when it succeeds, so a
# trigger copies every event, with the job's task, arguments and `scheduled_at`, aside.
EVENT_LOG_SQL = [
    """CREATE TABLE public.bench_job_events (
        job_id bigint, type text, at timestamptz, task_name text, args jsonb,
        scheduled_at timestamptz)""",
    """CREATE FUNCTION bench_copy_event() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO public.bench_job_events
        SELECT NEW.job_id, NEW.type::text, NEW.at, j.task_name, j.args, j.scheduled_at
        FROM procrastinate.procrastinate_jobs j WHERE j.id = NEW.job_id;
        RETURN NEW;
    END $$""",
    """CREATE TRIGGER bench_copy_event AFTER INSERT ON procrastinate.procrastinate_events
        FOR EACH ROW EXECUTE FUNCTION bench_copy_event()""",
    # A succeeded job is deleted before its event could be copied: its deletion is its end.
    """CREATE FUNCTION bench_copy_end() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO public.bench_job_events
        VALUES (OLD.id, 'ended', clock_timestamp(), OLD.task_name, OLD.args, OLD.scheduled_at);
        RETURN OLD;
    END $$""",
    """CREATE TRIGGER bench_copy_end BEFORE DELETE ON procrastinate.procrastinate_jobs
        FOR EACH ROW EXECUTE FUNCTION bench_copy_end()""",
]


# -- the fleet ---------------------------------------------------------------------------------


def invoice_spread(orgs: int, low: int, high: int, seed: int) -> list[int]:
    """Invoices per organisation: log-normal (median ~ 8x `low`, a long tail), clipped to
    [low, high], seeded. Most organisations are small, a few are large, as in a real fleet."""
    rng = random.Random(seed)
    median = min(high, low * 8)
    return [
        max(low, min(high, round(rng.lognormvariate(math.log(median), 1.0)))) for _ in range(orgs)
    ]


@dataclass
class Tenant:
    tenant_id: str
    invoices: int
    window: int = 0  # invoices dated within the full sync's window
    outstanding: int = 0  # AUTHORISED invoices dated before it

    @property
    def floor_calls(self) -> int:
        """The least calls its initial syncs take: per invoice phase ceil(items/1000) and at
        least the one call that finds a phase empty, plus one Accounts call."""
        return (
            max(1, math.ceil(self.window / 1000)) + max(1, math.ceil(self.outstanding / 1000)) + 1
        )


def reset_stores(db_name: str = DB_NAME, redis_url: str = REDIS_URL) -> None:
    """The benchmark's PostgreSQL database dropped and recreated, its Redis db flushed."""
    for sql in (f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)", f"CREATE DATABASE {db_name}"):
        subprocess.run(
            ["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c", sql],
            check=True,
        )
    redis.Redis.from_url(redis_url).flushdb()


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", DB_NAME, "-c", sql], check=True
    )


def _count(http: httpx.Client, token: str, tenant: str, **params: str) -> int:
    response = http.get(
        "/api.xro/2.0/Invoices",
        params={"page": "1", "pageSize": "1", **params},
        headers={"Authorization": f"Bearer {token}", "xero-tenant-id": tenant},
    )
    response.raise_for_status()
    count: int = response.json()["pagination"]["itemCount"]
    return count


def build_fleet(sandbox: SandboxProcess, sizes: list[int]) -> list[Tenant]:
    """Add one sandbox tenant per size and read, with the limits off, what its full sync must
    fetch (the floor's item counts, as bench/run.py reads them)."""
    cutoff = months_ago(datetime.now(UTC).date(), MONTHS_BACK)
    when = f"DateTime({cutoff.year},{cutoff.month:02d},{cutoff.day:02d})"
    tenants: list[Tenant] = []
    with httpx.Client(base_url=sandbox.base_url, timeout=120) as http:
        http.put("/_sandbox/limits", json={"enabled": False}).raise_for_status()
        for size in sizes:
            made = http.post("/_sandbox/tenants", json={"invoices": size}).json()
            tenants.append(Tenant(made["tenant_id"], size))
        ids = [t.tenant_id for t in tenants]
        token = http.post("/_sandbox/tokens", json={"tenant_ids": ids}).json()["access_token"]
        for t in tenants:
            t.window = _count(http, token, t.tenant_id, where=f"Date>={when}")
            t.outstanding = _count(
                http, token, t.tenant_id, Statuses="AUTHORISED", where=f"Date<{when}"
            )
        http.put("/_sandbox/limits", json={"enabled": True, "reset_counters": True})
        http.post("/_sandbox/stats/reset").raise_for_status()
    return tenants


def compressed_tick(time_scale: float) -> int:
    """The scheduler's tick in the compressed world: the real one (a minute) compressed like
    everything else, `60 / time_scale` (4 s at 15x), to the nearest divisor of a minute below it
    (a tick is a cron step). This benchmark once used a third of the compressed invoice interval
    (20 s) because a tick of 1,000 connections took seconds; since the tick stores only the
    day-limit readings that changed it takes ~0.1-0.5 s, and the faithful 4 s tick gave queue
    latency p95 1.0 s against 4.9 s (bench/README.md)."""
    return max(d for d in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60) if d <= 60 / time_scale)


def settings(sandbox_url: str, time_scale: float, **overrides: Any) -> Settings:
    config = SandboxConfig(limits_enabled=True, time_scale=time_scale)
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": DATABASE_URL,
        "redis_url": REDIS_URL,
        "token_encryption_keys": KEY,
        "log_level": "WARNING",
        **config.client_settings(sandbox_url),
    }
    return Settings(**{**values, **overrides})


async def connect_all(s: Settings, sandbox_url: str, tenants: list[Tenant]) -> list[uuid.UUID]:
    """One organisation, token set and connection per tenant, tokens minted by the sandbox (the
    OAuth dance skipped, as bench/sync_worker.py does); the organisation ids."""
    engine = create_engine(s.database_url)
    cipher = TokenCipher.from_settings(s)
    org_ids: list[uuid.UUID] = []
    try:
        async with httpx.AsyncClient(base_url=sandbox_url, timeout=60) as http:
            async with create_session_factory(engine)() as session:
                for i, t in enumerate(tenants):
                    tokens = (
                        await http.post("/_sandbox/tokens", json={"tenant_ids": [t.tenant_id]})
                    ).json()
                    org = Organization(name=f"Fleet {i}")
                    session.add(org)
                    await session.flush()
                    grant = OAuthGrant(
                        organization_id=org.id,
                        access_token_encrypted=cipher.encrypt(tokens["access_token"]),
                        refresh_token_encrypted=cipher.encrypt(tokens["refresh_token"]),
                        access_token_expires_at=utcnow() + timedelta(seconds=tokens["expires_in"]),
                    )
                    session.add(grant)
                    await session.flush()
                    session.add(
                        Connection(
                            organization_id=org.id,
                            tenant_id=t.tenant_id,
                            tenant_name=f"Fleet {i}",
                            grant_id=grant.id,
                        )
                    )
                    org_ids.append(org.id)
                await session.commit()
    finally:
        await engine.dispose()
    return org_ids


async def queue_initial(s: Settings, org_ids: list[uuid.UUID]) -> float:
    """Queue every organisation's full invoice sync and accounts sync (background runs, as
    `background=true` does); the seconds queueing took."""
    started = time.perf_counter()
    job_app = build_job_app(s)
    async with job_app.open_async():
        async with service_resources(s, TokenCipher.from_settings(s)) as resources:
            for org_id in org_ids:
                requests: list[InvoiceSyncRequest | AccountSyncRequest] = [
                    InvoiceSyncRequest(
                        organization_id=org_id,
                        provider=Provider.XERO,
                        incremental=False,
                        months_back=MONTHS_BACK,
                    ),
                    AccountSyncRequest(organization_id=org_id, provider=Provider.XERO),
                ]
                async with resources.session_factory() as session:
                    for request in requests:
                        await SyncsService(session, resources.factory).queue(request, job_app)
                    await session.commit()
    return time.perf_counter() - started


async def query(sql: str, *, database_url: str = DATABASE_URL, **params: Any) -> list[Any]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(text(sql), params)).all())
    finally:
        await engine.dispose()


# -- processes and sampling ---------------------------------------------------------------------


class Workers:
    """`ledgersync worker` processes with the environment a deployment would give them."""

    def __init__(self, count: int, env: dict[str, str]) -> None:
        self.processes = [
            subprocess.Popen([str(LEDGERSYNC), "worker"], cwd=ROOT, env={**os.environ, **env})
            for _ in range(count)
        ]

    def stop(self) -> None:
        for p in self.processes:
            p.send_signal(signal.SIGTERM)
        for p in self.processes:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()


def _plain(value: Any) -> str:
    """A setting as its environment variable's text: a secret's value, not its mask (`str` of
    a SecretStr is `**********`, which Xero's token endpoint refuses as the client secret the
    first time a worker refreshes a token: ~28 minutes in, so only in long runs)."""
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


def worker_env(s: Settings, **extra: str) -> dict[str, str]:
    """The environment of a `ledgersync worker` (or `serve`) process on the settings `s`."""
    keys = [
        "xero_authorize_url",
        "xero_token_url",
        "xero_revocation_url",
        "xero_connections_url",
        "xero_accounting_url",
        "xero_client_id",
        "xero_client_secret",
        "xero_minute_limit",
        "xero_concurrent_limit",
        "xero_app_minute_limit",
        "xero_minute_seconds",
    ]
    env = {k.upper(): _plain(getattr(s, k)) for k in keys}
    env.update(
        ENVIRONMENT="test",
        DATABASE_URL=s.database_url,
        REDIS_URL=s.redis_url or "",
        TOKEN_ENCRYPTION_KEYS=s.token_encryption_keys.get_secret_value(),
        XERO_PACING="true",
        LOG_LEVEL="WARNING",
        **extra,
    )
    return env


@dataclass
class _Background:
    """A daemon thread, and the event that asks it to stop; `stop()` waits for it."""

    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self, target: Callable[[], None]) -> None:
        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread:
            self.thread.join()


@dataclass
class Sampler:
    """Every `every_s`: each worker's RSS, the sandbox's call total, and the CPU seconds of the
    workers, the sandbox and this database's PostgreSQL backends."""

    sandbox: SandboxProcess
    workers: list[psutil.Process]
    every_s: float = 0.5
    peak_rss_mb: dict[int, float] = field(default_factory=dict)
    calls: list[tuple[float, int]] = field(default_factory=list)
    cpu: dict[int, float] = field(default_factory=dict)
    group: dict[int, str] = field(default_factory=dict)
    # (when, CPU seconds so far per group): to see which process's share moves over a run.
    cpu_series: list[tuple[datetime, dict[str, float]]] = field(default_factory=list)
    _background: _Background = field(default_factory=_Background)

    def _processes(self) -> list[psutil.Process]:
        backends = []
        for p in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(p.info["cmdline"] or [])
            if cmdline.startswith("postgres:") and f" {DB_NAME} " in f"{cmdline} ":
                backends.append(p)
        sandbox = psutil.Process(self.sandbox.process.pid)
        self.group.update({w.pid: "workers" for w in self.workers})
        self.group.update({b.pid: "postgres" for b in backends})
        self.group[sandbox.pid] = "sandbox"
        return [*self.workers, sandbox, *backends]

    def _sample(self, http: httpx.Client) -> None:
        for w in self.workers:
            try:
                rss = w.memory_info().rss / 2**20
            except psutil.Error:
                continue
            self.peak_rss_mb[w.pid] = max(self.peak_rss_mb.get(w.pid, 0.0), rss)
        for p in self._processes():
            try:
                t = p.cpu_times()
                self.cpu[p.pid] = float(t.user + t.system)
            except psutil.Error:
                continue
        by_group: dict[str, float] = {}
        for pid, seconds in self.cpu.items():
            group = self.group.get(pid, "other")
            by_group[group] = by_group.get(group, 0.0) + seconds
        self.cpu_series.append((utcnow(), by_group))
        total = http.get("/_sandbox/stats").json()["total"]
        self.calls.append((time.monotonic(), int(total)))

    def _loop(self) -> None:
        with httpx.Client(base_url=self.sandbox.base_url, timeout=30) as http:
            while not self._background.stopping.wait(self.every_s):
                self._sample(http)
            self._sample(http)

    def start(self) -> Sampler:
        with httpx.Client(base_url=self.sandbox.base_url, timeout=30) as http:
            self._sample(http)
        self.cpu_start = dict(self.cpu)
        self._background.start(self._loop)
        return self

    def stop(self) -> None:
        self._background.stop()

    def cpu_used_s(self, group: str | None = None) -> float:
        return sum(
            v - self.cpu_start.get(pid, 0.0)
            for pid, v in self.cpu.items()
            if group is None or self.group.get(pid) == group
        )

    def cores_busy(self, start: datetime, end: datetime) -> dict[str, float]:
        """Each group's CPU seconds between `start` and `end` over the wall time between."""
        inside = [(t, cpu) for t, cpu in self.cpu_series if start <= t <= end]
        if len(inside) < 2:
            return {}
        (t0, first), (t1, last) = inside[0], inside[-1]
        wall = (t1 - t0).total_seconds()
        return {g: (last.get(g, 0.0) - first.get(g, 0.0)) / wall for g in last}

    def peak_window_calls(self, window_s: float) -> int:
        """The most calls the sandbox answered in any `window_s` (one Xero minute)."""
        times = [t for t, _ in self.calls]
        best = 0
        for i, (t, total) in enumerate(self.calls):
            j = bisect.bisect_left(times, t - window_s, 0, i)
            best = max(best, total - self.calls[j][1])
        return best


@dataclass
class Vacuumer:
    """What PostgreSQL's autovacuum does, where this machine's server has it off (CI machines
    ship `autovacuum = off` in conf.d/90-ci.conf; production's default is on): every
    `naptime_s`, each table of the fleet's database with more dead rows than autovacuum's
    default threshold (50 + 20% of its live rows) is vacuumed and analysed. Without it the job
    queue's table bloats (a job is an insert, two updates and a delete), each worker's job fetch
    slows with it, and within half an hour the queue falls behind. The naptime is compressed
    with the rest: autovacuum's minute at `time_scale`."""

    naptime_s: float
    vacuums: int = 0
    seconds: float = 0.0
    _background: _Background = field(default_factory=_Background)

    @staticmethod
    def needed() -> bool:
        with psycopg.connect(PSYCOPG_URL) as connection:
            row = connection.execute("SHOW autovacuum").fetchone()
        return row is None or row[0] != "on"

    def _pass(self, connection: psycopg.Connection[tuple[Any, ...]]) -> None:
        due = connection.execute(
            "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables"
            " WHERE n_dead_tup > 50 + 0.2 * n_live_tup"
        ).fetchall()
        for (table,) in due:
            began = time.perf_counter()
            connection.execute(f"VACUUM (ANALYZE) {table}")
            self.seconds += time.perf_counter() - began
            self.vacuums += 1

    def _loop(self) -> None:
        with psycopg.connect(PSYCOPG_URL, autocommit=True) as connection:
            while not self._background.stopping.wait(self.naptime_s):
                self._pass(connection)

    def start(self) -> Vacuumer:
        self._background.start(self._loop)
        return self

    def stop(self) -> None:
        self._background.stop()


def wait_until_all_ended(timeout_s: float, database_url: str = DATABASE_URL) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = asyncio.run(
            query(
                "SELECT count(*) FROM sync_runs WHERE status IN ('queued', 'running', 'paused')",
                database_url=database_url,
            )
        )
        if rows[0][0] == 0:
            return
        time.sleep(1.0)
    raise TimeoutError(f"initial syncs still unfinished after {timeout_s:.0f} s")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


# -- the benchmark --------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> Report:
    report = Report()
    v = report.values
    sizes = invoice_spread(args.orgs, args.min_invoices, args.max_invoices, args.seed)
    v.update(orgs=args.orgs, invoices_total=sum(sizes), workers=args.workers)
    v.update(initial_time_scale=args.initial_time_scale, time_scale=args.time_scale)
    reset_stores()
    upgrade_database(DATABASE_URL)
    for sql in EVENT_LOG_SQL:
        _psql(sql)
    config = SandboxConfig(
        tenants=0, limits_enabled=True, time_scale=args.initial_time_scale, seed=args.seed
    )
    sandbox = SandboxProcess(config)
    # Autovacuum where the server has it off, at its naptime compressed like each phase's.
    vacuum = Vacuumer.needed()
    v["vacuumed_by_benchmark"] = vacuum
    vacuumers: list[Vacuumer] = []
    try:
        if vacuum:
            vacuumers.append(Vacuumer(60.0 / args.initial_time_scale).start())
        tenants = build_fleet(sandbox, sizes)
        s1 = settings(sandbox.base_url, args.initial_time_scale)
        org_ids = asyncio.run(connect_all(s1, sandbox.base_url, tenants))

        # Phase 1: every initial sync queued at once. The scheduler's intervals are at their
        # largest so that only the queued runs are run.
        env1 = worker_env(
            s1,
            JOB_CONCURRENCY=str(args.concurrency),
            SCHEDULE_INVOICES_MINUTES="10080",
            SCHEDULE_ACCOUNTS_MINUTES="10080",
        )
        workers = Workers(args.workers, env1)
        time.sleep(3)  # let them start listening
        sampler = Sampler(sandbox, [psutil.Process(p.pid) for p in workers.processes]).start()
        queue_s = asyncio.run(queue_initial(s1, org_ids))
        try:
            wait_until_all_ended(args.timeout)
        finally:
            sampler.stop()
            workers.stop()
        phase1(report, sandbox, tenants, sampler, queue_s, args)

        # Phase 2: the schedules alone, the minute (and day) compressed by `time_scale`.
        with httpx.Client(base_url=sandbox.base_url, timeout=30) as http:
            http.put("/_sandbox/limits", json={"time_scale": args.time_scale}).raise_for_status()
            http.post("/_sandbox/stats/reset").raise_for_status()
        s2 = settings(sandbox.base_url, args.time_scale)
        env2 = worker_env(
            s2,
            JOB_CONCURRENCY=str(args.concurrency),
            SCHEDULE_INVOICES_MINUTES=str(INVOICES_EVERY_MIN),
            SCHEDULE_ACCOUNTS_MINUTES=str(ACCOUNTS_EVERY_MIN),
            SCHEDULE_TICK_SECONDS=str(args.tick_seconds or compressed_tick(args.time_scale)),
        )
        if vacuum:
            vacuumers.append(Vacuumer(60.0 / args.time_scale).start())
            vacuumers[0].stop()
        phase_start = utcnow()
        workers = Workers(args.workers, env2)
        sampler2 = Sampler(sandbox, [psutil.Process(p.pid) for p in workers.processes]).start()
        stop_edits = threading.Event()
        editor = threading.Thread(
            target=edit_invoices, args=(sandbox, tenants, stop_edits, args.seed), daemon=True
        )
        editor.start()
        try:
            time.sleep(args.day_minutes * 60)
        finally:
            stop_edits.set()
            phase_end = utcnow()
            sampler2.stop()
            workers.stop()
            editor.join()
        phase2(report, sandbox, tenants, sampler2, phase_start, phase_end, args)
        peaks = [*sampler.peak_rss_mb.values(), *sampler2.peak_rss_mb.values()]
        for i, peak in enumerate(sorted(sampler.peak_rss_mb.values())):
            report.add(f"peak RSS, worker {i + 1} (initial syncs)", peak, 250, "MB")
        for i, peak in enumerate(sorted(sampler2.peak_rss_mb.values())):
            report.add(f"peak RSS, worker {i + 1} (schedules)", peak, 250, "MB")
        v["peak_rss_mb"] = max(peaks)
    finally:
        for vacuumer in vacuumers:
            vacuumer.stop()
        sandbox.stop()
    if vacuum:
        v["benchmark_vacuums"] = [vacuumer.vacuums for vacuumer in vacuumers]
        v["benchmark_vacuum_s"] = [round(vacuumer.seconds, 1) for vacuumer in vacuumers]
        report.add(
            "tables vacuumed by the benchmark (autovacuum is off)",
            sum(vacuumer.vacuums for vacuumer in vacuumers),
            None,
            "",
        )
    return report


def phase1(
    report: Report,
    sandbox: SandboxProcess,
    tenants: list[Tenant],
    sampler: Sampler,
    queue_s: float,
    args: argparse.Namespace,
) -> None:
    v = report.values
    rows = asyncio.run(
        query(
            "SELECT status, count(*), min(started_at), max(finished_at), sum(api_calls) "
            "FROM sync_runs GROUP BY status"
        )
    )
    by_status = {r[0]: r[1] for r in rows}
    first = min(r[2] for r in rows)
    last = max(r[3] for r in rows if r[3] is not None)
    wall = (last - first).total_seconds()
    stats = httpx.get(f"{sandbox.base_url}/_sandbox/stats").json()
    calls = int(stats["total"])
    refused = int(stats["by_status"].get("429", 0))
    minute_s = 60 / args.initial_time_scale
    floor_calls = sum(t.floor_calls for t in tenants)
    # The least time the limits allow for the least calls: every full app-wide window of 10,000
    # calls but the last waited out; per tenant the same with 60 (tenants are independent, so
    # the longest one counts). 5 in flight per tenant never binds a tenant's sequential pages.
    app_floor = max(0, math.ceil(floor_calls / APP_MINUTE_LIMIT) - 1) * minute_s
    tenant_floor = max(
        max(0, math.ceil(t.floor_calls / TENANT_MINUTE_LIMIT) - 1) * minute_s for t in tenants
    )
    limits_floor = max(app_floor, tenant_floor)
    cpu_s = sampler.cpu_used_s()
    cores = psutil.cpu_count() or 1
    report.add(
        f"organisations ({min(t.invoices for t in tenants)}-{max(t.invoices for t in tenants)})",
        len(tenants),
        None,
        "",
    )
    report.add("  invoices in the sandbox", sum(t.invoices for t in tenants), None, "")
    report.add(
        "  of which in the initial syncs' scope",
        sum(t.window + t.outstanding for t in tenants),
        None,
        "",
    )
    report.add("initial syncs: runs succeeded", by_status.get("success", 0), 2 * len(tenants), "")
    report.add(
        "  runs failed / paused / other",
        sum(n for k, n in by_status.items() if k != "success"),
        0,
        "",
    )
    report.add("  Xero API calls", calls, floor_calls, "calls", "initial_calls")
    v["initial_floor_calls"] = floor_calls
    report.add(
        f"  wall time (minute = {minute_s:g} s) vs limits floor",
        wall,
        limits_floor,
        "s",
        "initial_wall_s",
    )
    v["initial_limits_floor_s"] = limits_floor
    cpu_floor = cpu_s / cores
    report.add(
        f"  wall time vs CPU floor ({cpu_s:.0f} CPU s / {cores} cores)", wall, cpu_floor, "s"
    )
    v["initial_cpu_s"] = cpu_s
    v["initial_cpu_floor_s"] = cpu_floor
    for group in ("workers", "sandbox", "postgres"):
        used = sampler.cpu_used_s(group)
        report.add(f"    CPU: {group}", used, None, "s")
        v[f"initial_cpu_{group}_s"] = used
    report.add("  of which queueing (bench process)", queue_s, None, "s")
    report.add("  429 responses met", refused, 0, "", "initial_429s")
    peak = sampler.peak_window_calls(minute_s)
    report.add(
        "  peak app-minute calls (<= 80%)",
        peak,
        0.8 * APP_MINUTE_LIMIT,
        "calls",
        "initial_peak_app_minute_calls",
    )


def edit_invoices(
    sandbox: SandboxProcess, tenants: list[Tenant], stop: threading.Event, seed: int
) -> None:
    """A Xero user at work: every 15 s, 2% of the organisations each edit 1% of their invoices."""
    rng = random.Random(seed)
    with httpx.Client(base_url=sandbox.base_url, timeout=30) as http:
        while not stop.wait(15):
            for t in rng.sample(tenants, max(1, len(tenants) // 50)):
                http.post(
                    f"/_sandbox/tenants/{t.tenant_id}/invoices/touch",
                    json={"count": max(1, t.invoices // 100), "seed": rng.randrange(10**6)},
                )


def phase2(
    report: Report,
    sandbox: SandboxProcess,
    tenants: list[Tenant],
    sampler: Sampler,
    start: datetime,
    end: datetime,
    args: argparse.Namespace,
) -> None:
    real_s = (end - start).total_seconds()
    simulated_min = real_s * args.time_scale / 60
    report.add(
        f"schedules: {real_s / 60:.1f} real min = {simulated_min / 60:.1f} simulated h",
        None,
        None,
        "",
    )
    # Every run_sync job of the phase: when it became due (queued, or its scheduled_at) and
    # when a worker started it; the run it ran.
    jobs = asyncio.run(
        query(
            "SELECT e.job_id, min(e.at) FILTER (WHERE e.type = 'deferred'), "
            "min(e.at) FILTER (WHERE e.type = 'started'), max(e.scheduled_at), "
            "min(e.args->>'run_id'), min(e.at) FILTER (WHERE e.type = 'ended') "
            "FROM bench_job_events e WHERE e.task_name = 'syncs.run_sync' AND e.at >= :start "
            "GROUP BY e.job_id",
            start=start,
        )
    )
    runs = {
        str(r[0]): (r[1], r[2], r[3])
        for r in asyncio.run(
            query(
                "SELECT id, connection_id, object_type, status FROM sync_runs "
                "WHERE started_at >= :start",
                start=start,
            )
        )
    }
    # The first tick finds every pair due at once (phase 1 synced them all together): the
    # steady state is measured after a warm-up of two invoice intervals.
    warm = start + timedelta(seconds=2 * INVOICES_EVERY_MIN * 60)
    latencies: list[float] = []
    # (started, queue latency, time the job took or None) per job: the by-window table.
    timeline: list[tuple[datetime, float, float | None]] = []
    starts: dict[tuple[str, str], list[datetime]] = {}
    for _job, deferred, started, scheduled, run_id, ended in jobs:
        if deferred is None or started is None:
            continue
        due = max(deferred, scheduled) if scheduled else deferred
        if due >= warm:
            latencies.append((started - due).total_seconds())
            took = (ended - started).total_seconds() if ended else None
            timeline.append((started, latencies[-1], took))
        if run_id in runs:
            connection_id, object_type, _ = runs[run_id]
            starts.setdefault((str(connection_id), object_type), []).append(started)
    statuses: dict[str, int] = {}
    for _, _, status in runs.values():
        statuses[status] = statuses.get(status, 0) + 1
    connections = asyncio.run(query("SELECT id FROM connections"))
    # Lateness: for every slot of every (connection, object type) whose whole interval lies in
    # the phase (after a first interval of warm-up), the first start at or after it.
    # Per object type: slots checked, missed by more than one interval, worst lateness (s, and
    # in intervals).
    checked: dict[str, list[tuple[datetime, float, bool]]] = {"invoices": [], "accounts": []}
    for (cid,) in connections:
        for object_type, minutes in (
            ("invoices", INVOICES_EVERY_MIN),
            ("accounts", ACCOUNTS_EVERY_MIN),
        ):
            interval = minutes * 60
            offset = spread_offset(cid, object_type, interval)
            times = sorted(starts.get((str(cid), object_type), []))
            slot = latest_slot(warm, interval, offset) + timedelta(seconds=interval)
            while slot + timedelta(seconds=interval) <= end:
                found = next((t for t in times if t >= slot), None)
                lateness = ((found or end) - slot).total_seconds()
                checked[object_type].append((slot, lateness, found is None or lateness > interval))
                slot += timedelta(seconds=interval)
    every = {"invoices": INVOICES_EVERY_MIN * 60, "accounts": ACCOUNTS_EVERY_MIN * 60}
    slots = sum(len(c) for c in checked.values())
    late = sum(missed for c in checked.values() for _, _, missed in c)
    worst = max((lat / every[k] for k, c in checked.items() for _, lat, _ in c), default=0.0)
    worst_s = max((lat for c in checked.values() for _, lat, _ in c), default=0.0)
    for object_type, c in checked.items():
        missed = sum(m for _, _, m in c)
        report.add(
            f"  {object_type} (every {every[object_type] // 60} min): slots late / checked",
            missed,
            len(c),
            "",
            f"late_slots_{object_type}",
        )
        report.add(
            "    worst lateness",
            max((lat for _, lat, _ in c), default=None),
            every[object_type],
            "s",
        )
    stats = httpx.get(f"{sandbox.base_url}/_sandbox/stats").json()
    calls = int(stats["total"])
    per_day = calls / len(tenants) * (24 * 60 / simulated_min)
    report.add(
        "  scheduled runs (succeeded)", statuses.get("success", 0), None, "", "scheduled_runs"
    )
    report.values["simulated_hours"] = simulated_min / 60
    report.add(
        "  runs failed / paused / other",
        sum(n for k, n in statuses.items() if k not in ("success", "queued", "running")),
        0,
        "",
    )
    report.add("  slots checked (every connection, both types)", slots, None, "")
    report.add("  slots missed by more than one interval", late, 0, "", "late_slots")
    report.add("  worst lateness (intervals)", worst, 1.0, "", "worst_lateness_intervals")
    report.add("  worst lateness (s)", worst_s, None, "s", "worst_lateness_s")
    report.add(
        "  Xero calls per connection per simulated day",
        per_day,
        5000,
        "calls",
        "calls_per_connection_per_day",
    )
    report.add("  429 responses met", int(stats["by_status"].get("429", 0)), 0, "", "schedule_429s")
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    report.add("  queue latency p50 (due -> started)", p50, None, "s", "queue_latency_p50_s")
    report.add(
        "  queue latency p95 (due -> started)",
        p95,
        DAY_LATENCY_TARGET_S,
        "s",
        "queue_latency_p95_s",
    )
    report.add("  queue latency max", max(latencies) if latencies else None, None, "s")
    ticks = [
        float(r[0])
        for r in asyncio.run(
            query(
                "SELECT extract(epoch FROM max(at) FILTER (WHERE type = 'ended') "
                "- min(at) FILTER (WHERE type = 'started')) FROM bench_job_events "
                "WHERE task_name = 'schedules.enqueue_due_syncs' AND at >= :start "
                "GROUP BY job_id",
                start=start,
            )
        )
        if r[0] is not None
    ]
    tick = args.tick_seconds or compressed_tick(args.time_scale)
    report.add("  scheduler tick duration p50", percentile(ticks, 50), tick, "s")
    report.add("  scheduler tick duration max", max(ticks) if ticks else None, tick, "s")
    peak = sampler.peak_window_calls(60 / args.time_scale)
    report.add("  peak app-minute calls (<= 80%)", peak, 0.8 * APP_MINUTE_LIMIT, "calls")
    report.values["windows"] = by_window(timeline, sampler, start, warm, end, args.windows)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def by_window(
    timeline: list[tuple[datetime, float, float | None]],
    sampler: Sampler,
    phase_start: datetime,
    start: datetime,
    end: datetime,
    count: int,
) -> list[dict[str, Any]]:
    """The phase after its warm-up (`start`) cut into `count` equal windows: per window the
    jobs started, their queue latency and how long they took, and the cores each process kept
    busy (printed as a table: what changes as the run grows longer)."""
    width = (end - start) / count
    rows: list[dict[str, Any]] = []
    print(
        f"\n{'schedules (min)':<18} {'jobs':>6} {'latency p50/p95 s':>18} "
        f"{'job took p50/p95 s':>19} {'cores: workers sandbox postgres':>32}"
    )
    for i in range(count):
        lo, hi = start + i * width, start + (i + 1) * width
        inside = [row for row in timeline if lo <= row[0] < hi]
        latency = [lat for _, lat, _ in inside]
        took = [t for _, _, t in inside if t is not None]
        cores = sampler.cores_busy(lo, hi)
        lat50, lat95 = percentile(latency, 50), percentile(latency, 95)
        took50, took95 = percentile(took, 50), percentile(took, 95)
        from_min = (lo - phase_start).total_seconds() / 60
        to_min = (hi - phase_start).total_seconds() / 60
        rows.append(
            {
                "from_min": round(from_min, 1),
                "to_min": round(to_min, 1),
                "jobs": len(inside),
                "latency_p50_s": lat50,
                "latency_p95_s": lat95,
                "took_p50_s": took50,
                "took_p95_s": took95,
                "cores": {g: round(c, 2) for g, c in cores.items()},
            }
        )
        print(
            f"{from_min:>7.1f}-{to_min:<10.1f} {len(inside):>6} "
            f"{_fmt(lat50):>8} / {_fmt(lat95):<7} {_fmt(took50):>8} / {_fmt(took95):<8} "
            f"{cores.get('workers', 0):>13.2f} {cores.get('sandbox', 0):>7.2f} "
            f"{cores.get('postgres', 0):>8.2f}"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orgs", type=int, default=1000, help="connected organisations")
    parser.add_argument("--min-invoices", type=int, default=50)
    parser.add_argument("--max-invoices", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2, help="`ledgersync worker` processes")
    parser.add_argument("--concurrency", type=int, default=10, help="jobs per worker")
    parser.add_argument(
        "--initial-time-scale",
        type=float,
        default=1.0,
        help="Xero seconds per real second during the initial syncs (1: Xero's real minute)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=15.0,
        help="Xero seconds per real second during the schedules (15: a 1-minute schedule is "
        "Xero's 15 minutes)",
    )
    parser.add_argument("--day-minutes", type=float, default=8, help="real minutes of schedules")
    parser.add_argument(
        "--windows",
        type=int,
        default=5,
        help="the schedules phase cut into this many windows for the by-window table",
    )
    parser.add_argument(
        "--tick-seconds",
        type=int,
        choices=(1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60),
        help="the scheduler's tick (default: its real minute compressed, 4 s at 15x)",
    )
    parser.add_argument("--timeout", type=float, default=900, help="limit on the initial syncs")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 100 organisations, 4 minutes of schedules",
    )
    args = parser.parse_args()
    if args.quick:
        args.orgs, args.day_minutes = 100, 4
    started = time.perf_counter()
    report = run(args)
    report.print()
    took = time.perf_counter() - started
    print(f"\n{args.orgs:,} organisations, {args.workers} workers, benchmark took {took:.0f} s")
    if args.json:
        report.values["took_s"] = took
        args.json.write_text(json.dumps(report.values, indent=2, default=str))


if __name__ == "__main__":
    main()
