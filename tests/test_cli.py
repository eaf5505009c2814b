"""The operator commands, run as a person would (against a migrated SQLite file)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from src.cli import app
from src.core.settings import get_settings


@pytest.fixture
def cli_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("TOKEN_KEY_FILE", str(tmp_path / "key"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("cli_database")
def test_operators_create_orgs_users_and_revoke_keys() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    created = runner.invoke(app, ["orgs", "create", "Acme"])
    assert created.exit_code == 0
    org_id = created.stdout.strip()
    user = runner.invoke(
        app, ["users", "create", "ann@acme.test", "--org", org_id, "--role", "admin"]
    )
    assert user.exit_code == 0
    key = user.stdout.strip()
    assert key.startswith("lsk_")
    assert runner.invoke(app, ["keys", "revoke", key]).stdout.strip() == "revoked"
    unknown = runner.invoke(app, ["keys", "revoke", "nope"])
    assert unknown.exit_code == 2
    bad_role = runner.invoke(
        app, ["users", "create", "b@acme.test", "--org", org_id, "--role", "boss"]
    )
    assert bad_role.exit_code != 0
    no_org = runner.invoke(
        app, ["users", "create", "c@acme.test", "--org", "00000000-0000-0000-0000-000000000001"]
    )
    assert no_org.exit_code == 2
    assert "does not exist" in no_org.output
    rotated = runner.invoke(app, ["keys", "rotate-encryption"])
    assert rotated.exit_code == 0
    assert "re-encrypted 0 secrets" in rotated.stdout


def test_sandbox_serve_documents_every_switch() -> None:
    result = CliRunner().invoke(app, ["sandbox", "serve", "--help"])
    assert result.exit_code == 0
    for switch in (
        "--tenants",
        "--invoices",
        "--seed",
        "--auto-approve",
        "--no-limits",
        "--time-scale",
        "--latency-ms",
    ):
        assert switch in result.output
