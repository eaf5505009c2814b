"""singer-io's tap-xero as the benchmark's baseline: installed into its own venv on first use, run
against the same sandbox and data as our sync, extracting its `invoices` stream to /dev/null.

tap-xero pages 100 invoices per call, one call at a time, ordered by `UpdatedDateUTC`, and sleeps
`Retry-After` on a minute-limit 429 (three tries). It reads every invoice modified since its
`start_date`: with a start date before the generated history, that is every invoice, the same set
our full sync with a 120-month window stores."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from src.xero_sandbox.config import SandboxConfig
from src.xero_sandbox.server import SandboxProcess

VENV = Path(__file__).resolve().parent / ".venv-tap-xero"
SHIM = Path(__file__).resolve().parent / "tap_xero_shim.py"
# tap-xero imports `six` without declaring it.
REQUIREMENTS = ["tap-xero==2.6.0", "six==1.16.0"]
START_DATE = "2000-01-01T00:00:00Z"


@dataclass
class TapRun:
    invoices: int
    wall_s: float
    cpu_s: float
    api_calls: int
    token_calls: int


def python() -> Path:
    """tap-xero's venv Python, creating the venv (pinned versions) when it is missing."""
    interpreter = VENV / "bin" / "python"
    marker = VENV / "installed.json"
    if not marker.exists() or json.loads(marker.read_text()) != REQUIREMENTS:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run(
            [str(interpreter), "-m", "pip", "install", "--quiet", *REQUIREMENTS], check=True
        )
        marker.write_text(json.dumps(REQUIREMENTS))
    return interpreter


def _selected_invoices_only(catalog: dict[str, Any]) -> dict[str, Any]:
    """tap-xero's discovered catalog reduced to its `invoices` stream, selected."""
    streams = [s for s in catalog["streams"] if s["tap_stream_id"] == "invoices"]
    for stream in streams:
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = True
    return {"streams": streams}


def _stats(sandbox: SandboxProcess) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{sandbox.base_url}/_sandbox/stats").json()
    return stats


def run(sandbox: SandboxProcess, tenant_id: str) -> TapRun:
    """One tap-xero extraction of every invoice of `tenant_id`; raises if the tap fails."""
    interpreter = python()
    settings = SandboxConfig().client_settings(sandbox.base_url)
    tokens = httpx.post(
        f"{sandbox.base_url}/_sandbox/tokens", json={"tenant_ids": [tenant_id]}
    ).json()
    with tempfile.TemporaryDirectory(prefix="tap-xero-") as workdir:
        config_path = Path(workdir) / "config.json"
        config_path.write_text(
            json.dumps(
                {
                    "start_date": START_DATE,
                    "client_id": settings["xero_client_id"],
                    "client_secret": settings["xero_client_secret"],
                    "tenant_id": tenant_id,
                    "refresh_token": tokens["refresh_token"],
                }
            )
        )
        shim = [
            str(interpreter),
            str(SHIM),
            settings["xero_accounting_url"],
            settings["xero_token_url"],
            "--config",
            str(config_path),
        ]
        discovered = subprocess.run([*shim, "--discover"], capture_output=True, text=True)
        if discovered.returncode != 0:
            raise RuntimeError(f"tap-xero discovery failed: {discovered.stderr[-2000:]}")
        catalog_path = Path(workdir) / "catalog.json"
        catalog_path.write_text(json.dumps(_selected_invoices_only(json.loads(discovered.stdout))))
        httpx.post(f"{sandbox.base_url}/_sandbox/stats/reset").raise_for_status()
        started = time.perf_counter()
        process = subprocess.Popen(
            [*shim, "--catalog", str(catalog_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        _, stderr = process.communicate()
        wall_s = time.perf_counter() - started
        if process.returncode != 0:
            raise RuntimeError(f"tap-xero failed: {stderr[-2000:]}")
    usage = json.loads(stderr.rsplit("TAP_XERO_USAGE ", 1)[1].splitlines()[0])
    stats = _stats(sandbox)
    return TapRun(
        invoices=_records(stderr),
        wall_s=wall_s,
        cpu_s=float(usage["cpu_s"]),
        api_calls=int(stats["by_path"].get("/Invoices", 0)),
        token_calls=sum(stats["token_calls"].values()),
    )


def _records(stderr: str) -> int:
    """Invoices the tap wrote, from singer's `record_count` metric lines on stderr."""
    total = 0
    for line in stderr.splitlines():
        if "METRIC:" not in line:
            continue
        metric = json.loads(line.split("METRIC:", 1)[1])
        if metric.get("metric") == "record_count" and metric["tags"].get("endpoint") == "invoices":
            total += int(metric["value"])
    return total
