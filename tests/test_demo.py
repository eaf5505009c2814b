"""The README's main job runs end to end (small data, its own SQLite file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from src.demo import _run


async def test_demo_connects_and_syncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}")
    monkeypatch.setenv("TOKEN_KEY_FILE", str(tmp_path / "key"))
    results = await _run(invoices=150, as_json=True)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == results
    assert [r["object_type"] for r in results] == ["invoices", "invoices", "accounts", "invoices"]
    assert all(r["success"] for r in results)
    full, incremental, accounts, background = results
    assert [c["mode"] for c in full["connections"]] == ["full", "full"]
    assert [c["mode"] for c in incremental["connections"]] == ["incremental", "incremental"]
    assert incremental["created"] + incremental["updated"] >= 4  # the edits made between syncs
    assert accounts["count"] > 0
    # The demo explains the full sync's count from the sandbox's own books: what lies in the
    # window, what older is still outstanding, what lies outside it.
    window = full["window"]
    assert window["months_back"] == 12
    by_connection = {c["connection_id"]: c for c in full["connections"]}
    assert sorted(w["connection_id"] for w in window["connections"]) == sorted(by_connection)
    for explained, sentence in zip(window["connections"], full["explanation"], strict=True):
        synced = by_connection[explained["connection_id"]]
        assert explained["sync_run_id"] == synced["sync_run_id"]
        assert explained["invoices_at_xero"] == 150
        assert explained["stored"] == synced["count"]
        assert explained["in_window"] + explained["older_outstanding"] == synced["count"]
        assert explained["outside_window"] > 0
        assert synced["count"] + explained["outside_window"] == 150
        for shown in (explained["window_start"], explained["outside_window"], synced["count"]):
            assert str(shown) in sentence
        assert synced["sync_run_id"] in sentence
    # And what the incremental sync's numbers mean, per connection's run.
    assert len(incremental["explanation"]) == len(incremental["connections"])
    for c, sentence in zip(incremental["connections"], incremental["explanation"], strict=True):
        assert c["sync_run_id"] in sentence
        assert f"unchanged={c['unchanged']}" in sentence
    # The background full sync: one queued run per connection, run by the app's in-process
    # worker, followed at GET /sync-runs/{id} until it ended.
    assert background["background"] is True
    runs = background["sync_runs"]
    assert sorted(r["connection_id"] for r in runs) == sorted(
        str(c["connection_id"]) for c in full["connections"]
    )
    for run in runs:
        assert run["status"] == "success"
        assert run["mode"] == "full"
        assert run["params"]["background"] is True
        assert run["pages"] >= 1
        assert run["count"] > 0
        assert run["finished_at"] is not None
    assert background["count"] == sum(r["count"] for r in runs)
    assert (tmp_path / "key").exists()


async def test_the_demo_runs_again_on_the_same_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second `make demo` takes its organisation back (a Xero organisation is held by one
    ledgersync organisation at a time) instead of failing on the connect."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}")
    monkeypatch.setenv("TOKEN_KEY_FILE", str(tmp_path / "key"))
    await _run(invoices=150, as_json=True)
    again = await _run(invoices=150, as_json=True)
    assert all(r["success"] for r in again)
    full = again[0]
    assert full["count"] > 0
    assert full["created"] == 0  # the same books, already here


async def test_the_demo_says_what_its_numbers_mean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json: each connection's run id, the window and what lies outside it, what
    `unchanged` means."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}")
    monkeypatch.setenv("TOKEN_KEY_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("COLUMNS", "200")
    results = await _run(invoices=150, as_json=False)
    shown = " ".join(capsys.readouterr().out.split())
    *synced, _ = results
    for result in synced:
        for connection in result["connections"]:
            assert f"run {connection['sync_run_id']}: {connection['tenant_name']}" in shown
    for explained in results[0]["window"]["connections"]:
        assert f"dated from {explained['window_start']} (months_back=12)" in shown
        assert f"the other {explained['outside_window']}," in shown
    assert "unchanged=" in shown
    assert "re-reads the last invoices it already has" in shown
