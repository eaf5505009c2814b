"""The sync benchmark of issues 5 and 14: API calls, wall time under Xero's limits, unthrottled
throughput into PostgreSQL and SQLite, peak memory, and the full sync's wall time under Xero's
limits when each call takes as long as real Xero's, each against its baseline.

    uv run python bench/run.py [--invoices 100000] [--json PATH] [--quick] [--sizes 10000,100000]
        [--only unthrottled,limited,memory,latency] [--latency-ms 1000]
        [--latency-sizes 20000,100000]

The sandbox and the sync run in separate processes (the sync through `bench/sync_worker.py`), so
their CPU and memory are measured apart. Every number is measured in the run that prints it."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import postgres_floor, tap_xero_baseline  # noqa: E402
from src.domains.external_accounting.base.sync import months_ago  # noqa: E402
from src.domains.external_accounting.xero.data.limits_model import least_wall_time  # noqa: E402
from src.xero_sandbox.config import SandboxConfig  # noqa: E402
from src.xero_sandbox.server import SandboxProcess  # noqa: E402

BENCH_KEY = Fernet.generate_key().decode()
# BENCH_POSTGRES_DB: another database name, for benchmarks run side by side (each run drops it).
BENCH_DB = os.environ.get("BENCH_POSTGRES_DB", "ledgersync_bench")
POSTGRES = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{BENCH_DB}"
# Six years of generated history: a 120-month window makes the full sync extract every invoice,
# the same set an extract-everything tool such as tap-xero reads.
MONTHS_BACK = 120
# Xero's 2026 tiers: calls a day per tenant (the default, and the smallest tier's).
DEFAULT_DAY_LIMIT = 5000


@dataclass
class Report:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        metric: str,
        ours: float | None,
        baseline: float | None,
        unit: str,
        key: str | None = None,
    ) -> None:
        ratio = f"{ours / baseline:.2f}x" if ours is not None and baseline else "n/a"
        self.rows.append((metric, _fmt(ours, unit), _fmt(baseline, unit), ratio))
        if key:
            self.values[key] = ours

    def print(self) -> None:
        widths = [
            max(len(r[i]) for r in [("metric", "ours", "baseline", "ratio"), *self.rows])
            for i in range(4)
        ]
        header = ("metric", "ours", "baseline", "ratio")
        for row in [header, tuple("-" * w for w in widths), *self.rows]:
            print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "not measured"
    return f"{value:,.0f} {unit}".strip() if value >= 100 else f"{value:,.2f} {unit}".strip()


def _reset_postgres() -> None:
    for sql in (f"DROP DATABASE IF EXISTS {BENCH_DB}", f"CREATE DATABASE {BENCH_DB}"):
        subprocess.run(
            ["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c", sql],
            check=True,
        )


def _worker(
    database_url: str,
    sandbox: SandboxProcess,
    tenant: str,
    mode: str,
    environment: dict[str, str] | None = None,
) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.sync_worker",
            database_url,
            sandbox.base_url,
            tenant,
            mode,
            str(MONTHS_BACK),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_TOKEN_KEY": BENCH_KEY, **(environment or {})},
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if not result["success"]:
        raise RuntimeError(f"the sync failed: {result['error']}: {result['error_detail']}")
    return result


def _tenant(sandbox: SandboxProcess) -> str:
    tenant: str = httpx.get(f"{sandbox.base_url}/_sandbox/tenants").json()[0]["tenant_id"]
    return tenant


def _item_count(sandbox: SandboxProcess, tenant: str, **params: str) -> int:
    tokens = httpx.post(f"{sandbox.base_url}/_sandbox/tokens", json={"tenant_ids": [tenant]}).json()
    response = httpx.get(
        f"{sandbox.base_url}/api.xro/2.0/Invoices",
        params={"page": "1", "pageSize": "1", **params},
        headers={"Authorization": f"Bearer {tokens['access_token']}", "xero-tenant-id": tenant},
        timeout=300,
    )
    count: int = response.json()["pagination"]["itemCount"]
    return count


PARTS = ("unthrottled", "limited", "memory", "latency")


def _sandbox(
    invoices: int, *, limits: bool, time_scale: float = 1.0, latency_ms: float = 0.0
) -> SandboxProcess:
    config = SandboxConfig(
        tenants=1,
        invoices=invoices,
        accounts=1000,
        limits_enabled=limits,
        time_scale=time_scale,
        latency_ms=latency_ms,
    )
    return SandboxProcess(config)


def _floor_calls(sandbox: SandboxProcess, tenant: str) -> int:
    """The least invoice calls of a full sync: per phase its pages, at least the one call that
    finds it empty (phase 1 = dated in the window, phase 2 = AUTHORISED and dated before it)."""
    cutoff = months_ago(datetime.now(UTC).date(), MONTHS_BACK)
    date_filter = f"Date>=DateTime({cutoff.year},{cutoff.month:02d},{cutoff.day:02d})"
    window = _item_count(sandbox, tenant, where=date_filter)
    older = f"Date<DateTime({cutoff.year},{cutoff.month:02d},{cutoff.day:02d})"
    outstanding = _item_count(sandbox, tenant, Statuses="AUTHORISED", where=older)
    return math.ceil(window / 1000) + max(1, math.ceil(outstanding / 1000))


def _size_key(base: str, size: int) -> str:
    """`latency_wall_s` at 100,000 invoices, `latency_wall_s_20k` at 20,000."""
    return base if size == 100_000 else f"{base}_{size // 1000}k"


def run_latency(
    report: Report,
    sizes: list[int],
    latency_ms: float,
    *,
    tap_at_20k: bool = True,
    tiers: tuple[int, ...] = (DEFAULT_DAY_LIMIT, 1000),
) -> None:
    """The full sync of issue 14: Xero's limits on at Xero's real minute (5 in flight, 60 a
    minute), every call taking `latency_ms` more, into PostgreSQL; against the least time the
    limits allow for the floor number of calls at that latency; at 20,000 invoices, tap-xero on
    the same sandbox (100 invoices a call, one at a time: over 3 minutes); at 100,000, the
    full sync again under each of Xero's day-limit `tiers`."""
    report.values["latency_ms"] = latency_ms
    for size in sizes:
        sandbox = _sandbox(size, limits=True, latency_ms=latency_ms)
        try:
            tenant = _tenant(sandbox)
            floor_calls = _floor_calls(sandbox, tenant)
            _reset_postgres()
            httpx.put(
                f"{sandbox.base_url}/_sandbox/limits", json={"reset_counters": True}
            ).raise_for_status()
            httpx.post(f"{sandbox.base_url}/_sandbox/stats/reset").raise_for_status()
            result = _worker(POSTGRES, sandbox, tenant, "full")
            stats = httpx.get(f"{sandbox.base_url}/_sandbox/stats").json()
            floor_s = least_wall_time(floor_calls, latency_ms / 1000)
            report.add(
                f"latency {latency_ms:g} ms, {size:,} invoices: full sync wall time",
                result["wall_s"],
                floor_s,
                "s",
                _size_key("latency_wall_s", size),
            )
            report.values[_size_key("latency_floor_s", size)] = floor_s
            report.values[_size_key("latency_api_calls", size)] = result["api_calls"]
            report.values[_size_key("latency_api_calls_floor", size)] = floor_calls
            report.values[_size_key("latency_429s", size)] = stats["by_status"].get("429", 0)
            report.add("  invoice API calls", result["api_calls"], floor_calls, "calls")
            report.add("  of which paced by the call limiter", result["paced_s"], None, "s")
            report.add("  429 responses met", stats["by_status"].get("429", 0), None, "")
            report.add("  unique invoices stored", result["count"], size, "")
            if size == 20_000 and tap_at_20k:
                # tap-xero on the same sandbox, data and latency, every limit window afresh.
                httpx.put(
                    f"{sandbox.base_url}/_sandbox/limits", json={"reset_counters": True}
                ).raise_for_status()
                tap = tap_xero_baseline.run(sandbox, tenant)
                report.add("  tap-xero at the same latency", tap.wall_s, floor_s, "s")
                report.values["tap_xero_latency_wall_s_20k"] = tap.wall_s
                report.add(
                    "  speed-up vs tap-xero (target >= 10x)",
                    tap.wall_s / result["wall_s"],
                    None,
                    "x",
                )
                report.values["latency_speedup_vs_tap_xero_20k"] = tap.wall_s / result["wall_s"]
                report.add("  tap-xero: invoice API calls", tap.api_calls, floor_calls, "calls")
            if size == 100_000:
                _run_tiers(report, sandbox, tenant, floor_s, tiers, result["wall_s"])
        finally:
            sandbox.stop()


def _run_tiers(
    report: Report,
    sandbox: SandboxProcess,
    tenant: str,
    floor_s: float,
    tiers: tuple[int, ...],
    default_wall_s: float,
) -> None:
    """The time to a first complete copy under each day limit: the sandbox enforcing it and the
    sync told it (`XERO_DAY_LIMIT`, from which the reserve and the schedules' margin follow).
    The default tier's is the run just made."""
    by_tier: dict[str, float] = {}
    for day_limit in tiers:
        if day_limit == DEFAULT_DAY_LIMIT:
            by_tier[str(day_limit)] = default_wall_s
            continue
        _reset_postgres()
        httpx.put(
            f"{sandbox.base_url}/_sandbox/limits",
            json={"reset_counters": True, "day_limit": day_limit},
        ).raise_for_status()
        result = _worker(POSTGRES, sandbox, tenant, "full", {"XERO_DAY_LIMIT": str(day_limit)})
        by_tier[str(day_limit)] = result["wall_s"]
        report.add(
            f"  first complete copy, {day_limit:,} calls a day",
            result["wall_s"],
            floor_s,
            "s",
        )
        report.add("    invoice API calls", result["api_calls"], None, "calls")
    httpx.put(
        f"{sandbox.base_url}/_sandbox/limits", json={"day_limit": DEFAULT_DAY_LIMIT}
    ).raise_for_status()
    report.values["first_copy_s_by_day_limit"] = by_tier


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def limited_floor_s(calls: int, minute_limit: int, time_scale: float) -> float:
    """The least wall time Xero's per-minute limit allows for `calls` sequential-window calls: every
    full window of `minute_limit` calls but the last must be waited out."""
    windows = math.ceil(calls / minute_limit)
    return max(0, windows - 1) * 60.0 / time_scale


def run(
    invoices: int,
    sizes: list[int],
    time_scale: float,
    *,
    parts: frozenset[str] = frozenset(PARTS),
    latency_ms: float = 1000.0,
    latency_sizes: tuple[int, ...] = (20_000, 100_000),
    tiers: tuple[int, ...] = (DEFAULT_DAY_LIMIT, 1000),
) -> Report:
    report = Report()
    report.values["invoices"] = invoices
    report.values["parts"] = sorted(parts)
    if "unthrottled" in parts or "limited" in parts:
        _run_issue_5(report, invoices, time_scale, parts)
    if "memory" in parts:
        _run_memory(report, sizes)
    if "latency" in parts:
        run_latency(report, list(latency_sizes), latency_ms, tiers=tiers)
    return report


def _run_issue_5(report: Report, invoices: int, time_scale: float, parts: frozenset[str]) -> None:
    cutoff = months_ago(datetime.now(UTC).date(), MONTHS_BACK)

    if "unthrottled" in parts:
        # 1 + 3: unthrottled, PostgreSQL then SQLite, on the same data.
        sandbox = _sandbox(invoices, limits=False)
        try:
            tenant = _tenant(sandbox)
            date_filter = f"Date>=DateTime({cutoff.year},{cutoff.month:02d},{cutoff.day:02d})"
            window = _item_count(sandbox, tenant, where=date_filter)
            older = f"Date<DateTime({cutoff.year},{cutoff.month:02d},{cutoff.day:02d})"
            outstanding = _item_count(sandbox, tenant, Statuses="AUTHORISED", where=older)
            # Per phase: its pages, and at least the one call that finds a phase empty.
            floor = math.ceil(window / 1000) + max(1, math.ceil(outstanding / 1000))
            _reset_postgres()
            sandbox_process = psutil.Process(sandbox.process.pid)
            cpu_before = _cpu(sandbox_process)
            server_before = postgres_floor.server_cpu_s()
            postgres = _worker(POSTGRES, sandbox, tenant, "full")
            sandbox_cpu = _cpu(sandbox_process) - cpu_before
            server_cpu = postgres_floor.server_cpu_s() - server_before
            report.add(
                "full sync: invoice API calls",
                postgres["api_calls"],
                floor,
                "calls",
                "api_calls_full",
            )
            report.values["api_calls_floor"] = floor
            in_scope = _item_count(sandbox, tenant, where=f'{date_filter} OR Status=="AUTHORISED"')
            report.add("full sync: unique invoices stored", postgres["count"], in_scope, "")
            changed = max(1, invoices // 100)
            httpx.post(
                f"{sandbox.base_url}/_sandbox/tenants/{tenant}/invoices/touch",
                json={"count": changed},
            ).raise_for_status()
            incremental = _worker(POSTGRES, sandbox, tenant, "incremental")
            report.add(
                "incremental after 1% changed: calls",
                incremental["api_calls"],
                math.ceil(changed / 1000),
                "calls",
                "api_calls_incremental",
            )
            rate = postgres["count"] / postgres["wall_s"]
            report.add(
                "unthrottled into PostgreSQL",
                rate,
                5000,
                "inv/s",
                "unthrottled_invoices_per_s_postgres",
            )
            sync_cpu = postgres["cpu_s"]
            report.add("  CPU: sync process (incl. start-up)", sync_cpu, None, "s", "cpu_sync_s")
            report.add("  CPU: the sync alone", postgres["cpu_run_s"], None, "s", "cpu_sync_run_s")
            report.add("  CPU: sandbox process", sandbox_cpu, None, "s", "cpu_sandbox_s")
            report.add("  CPU: PostgreSQL server", server_cpu, None, "s", "cpu_postgres_s")
            # What bounds the rate on a small machine: the three processes share its cores.
            busy = (postgres["cpu_run_s"] + sandbox_cpu + server_cpu) / postgres["wall_s"]
            report.add("  cores busy during the sync", busy, os.cpu_count(), "", "cores_busy")
            floor_copy = postgres_floor.copy_floor(POSTGRES.replace("+asyncpg", ""))
            report.add(
                "COPY floor: the same rows re-COPY'd",
                floor_copy.invoices_per_s,
                None,
                "inv/s",
                "copy_floor_invoices_per_s",
            )
            report.add(
                "  ours as a fraction of the COPY floor", rate, floor_copy.invoices_per_s, "inv/s"
            )
            report.values["copy_floor_fraction"] = rate / floor_copy.invoices_per_s
            sqlite_path = ROOT / "var" / "bench.db"
            for leftover in sqlite_path.parent.glob("bench.db*"):
                leftover.unlink()
            sqlite = _worker(f"sqlite+aiosqlite:///{sqlite_path}", sandbox, tenant, "full")
            report.add(
                "unthrottled into SQLite",
                sqlite["count"] / sqlite["wall_s"],
                5000,
                "inv/s",
                "unthrottled_invoices_per_s_sqlite",
            )
            tap = tap_xero_baseline.run(sandbox, tenant)
            tap_rate = tap.invoices / tap.wall_s
            report.add("tap-xero unthrottled (to /dev/null)", tap_rate, None, "inv/s")
            report.values["tap_xero_unthrottled_invoices_per_s"] = tap_rate
            report.add("  ours into PostgreSQL vs tap-xero", rate, tap_rate, "inv/s")
            report.values["unthrottled_ratio_vs_tap_xero"] = rate / tap_rate
            report.add("  tap-xero: invoices extracted", tap.invoices, in_scope, "")
            report.add("  tap-xero: invoice API calls", tap.api_calls, floor, "calls")
            report.add("  CPU: tap-xero process", tap.cpu_s, None, "s", "cpu_tap_xero_s")
        finally:
            sandbox.stop()

    if "limited" not in parts:
        return
    if "api_calls_floor" not in report.values:
        sandbox = _sandbox(invoices, limits=False)
        try:
            report.values["api_calls_floor"] = _floor_calls(sandbox, _tenant(sandbox))
        finally:
            sandbox.stop()
    # 2: Xero's limits on, a Xero minute compressed by `time_scale`.
    sandbox = _sandbox(invoices, limits=True, time_scale=time_scale)
    try:
        tenant = _tenant(sandbox)
        _reset_postgres()
        httpx.post(f"{sandbox.base_url}/_sandbox/stats/reset").raise_for_status()
        limited = _worker(POSTGRES, sandbox, tenant, "full")
        refused = httpx.get(f"{sandbox.base_url}/_sandbox/stats").json()["by_status"].get("429", 0)
        # The least time Xero's minute limit allows for the least number of calls.
        floor_s = limited_floor_s(report.values["api_calls_floor"], 60, time_scale)
        report.add(
            f"limited wall time (minute = {60 / time_scale:g} s)",
            limited["wall_s"],
            floor_s,
            "s",
            "limited_wall_s",
        )
        report.values["limited_floor_s"] = floor_s
        report.values["time_scale"] = time_scale
        report.add("  of which paced by the call limiter", limited["paced_s"], None, "s")
        report.add("  429 responses met", refused, None, "", "limited_429s")
        # The same data again, with every limit window started afresh for tap-xero.
        limits_reset = httpx.put(
            f"{sandbox.base_url}/_sandbox/limits", json={"reset_counters": True}
        )
        limits_reset.raise_for_status()
        tap = tap_xero_baseline.run(sandbox, tenant)
        report.add("tap-xero limited wall time", tap.wall_s, floor_s, "s")
        report.values["tap_xero_limited_wall_s"] = tap.wall_s
        speedup = tap.wall_s / limited["wall_s"]
        report.add("  speed-up vs tap-xero (target >= 8x)", speedup, None, "x")
        report.values["limited_speedup_vs_tap_xero"] = speedup
        report.add("  tap-xero: invoice API calls", tap.api_calls, None, "calls")
    finally:
        sandbox.stop()


def _run_memory(report: Report, sizes: list[int]) -> None:
    # 4: peak memory of the sync process by organisation size.
    peaks: dict[str, float] = {}
    for size in sizes:
        sandbox = _sandbox(size, limits=False)
        try:
            _reset_postgres()
            result = _worker(POSTGRES, sandbox, _tenant(sandbox), "full")
            peaks[str(size)] = result["peak_rss_mb"]
            report.add(
                f"peak RSS of the sync at {size:,} invoices", result["peak_rss_mb"], 250, "MB"
            )
        finally:
            sandbox.stop()
    report.values["peak_rss_mb"] = max(peaks.values()) if peaks else None
    report.values["peak_rss_mb_by_size"] = peaks


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 5,000 invoices, sizes 2,000 and 5,000"
    )
    parser.add_argument(
        "--sizes", default="10000,100000", help="organisation sizes for the memory part"
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="Xero seconds per real second in the limits part (1 = Xero's real minute)",
    )
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"the parts to run, comma-separated, of {','.join(PARTS)} (default all)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=1000.0,
        help="the latency part: ms every accounting call takes (real Xero: ~1 s per page)",
    )
    parser.add_argument(
        "--latency-sizes",
        default="20000,100000",
        help="the latency part: organisation sizes (Xero's real minute: 100k takes ~2 min)",
    )
    parser.add_argument(
        "--tiers",
        default=f"{DEFAULT_DAY_LIMIT},1000",
        help="the latency part at 100,000 invoices: Xero day limits to time a first copy under",
    )
    args = parser.parse_args()
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    if unknown := parts - set(PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    invoices = 5_000 if args.quick else args.invoices
    sizes = [2_000, 5_000] if args.quick else [int(s) for s in args.sizes.split(",") if s]
    latency_sizes = tuple(int(s) for s in args.latency_sizes.split(",") if s)
    started = time.perf_counter()
    report = run(
        invoices,
        sizes,
        args.time_scale,
        parts=frozenset(parts),
        latency_ms=args.latency_ms,
        latency_sizes=(5_000,) if args.quick else latency_sizes,
        tiers=tuple(int(t) for t in args.tiers.split(",") if t),
    )
    report.print()
    print(f"\n{invoices:,} invoices, benchmark took {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report.values, indent=2))


if __name__ == "__main__":
    main()
