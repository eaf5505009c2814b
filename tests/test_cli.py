"""The operator commands, run as a person would (against a migrated SQLite file)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from typer.testing import CliRunner

from src.cli import app
from src.core.settings import Settings, get_settings
from src.xero_sandbox.server import RunningSandbox, free_port
from tests.fixtures import SANDBOX_CONFIG, TEST_ENCRYPTION_KEY, connect, start_connect


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
        "--webhook-url",
        "--webhook-key",
    ):
        assert switch in result.output


def test_redirect_uri_follows_the_public_base_url() -> None:
    derived = Settings(public_base_url="https://ledgersync.example/", xero_redirect_uri="")
    assert derived.xero_redirect_uri == (
        "https://ledgersync.example/external-accounting/xero/callback"
    )
    explicit = Settings(public_base_url="http://a:1", xero_redirect_uri="https://b/callback")
    assert explicit.xero_redirect_uri == "https://b/callback"


def test_serve_without_a_sandbox_at_the_url_says_so() -> None:
    result = CliRunner().invoke(app, ["serve", "--sandbox", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 2
    assert "no Xero sandbox answers at" in result.output


def _wait_for_health(base_url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, server.communicate()[1].decode()
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"ledgersync did not start at {base_url}")


@pytest.fixture
def operator(cli_database: None) -> tuple[str, str]:
    """A migrated database with an organisation and its admin's API key, made by the CLI (outside
    the test's event loop: the commands run their own)."""
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    org_id = runner.invoke(app, ["orgs", "create", "Acme"]).stdout.strip()
    key = runner.invoke(
        app, ["users", "create", "ann@acme.test", "--org", org_id, "--role", "admin"]
    ).stdout.strip()
    return org_id, key


async def test_serve_on_any_port_against_the_sandbox_in_one_step(
    fresh_sandbox: RunningSandbox, operator: tuple[str, str], tmp_path: Path
) -> None:
    org_id, key = operator
    port = free_port()
    # Nothing Xero-related or URL-related configured: `--port` and `--sandbox` are all it gets.
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("XERO_") and name.upper() != "PUBLIC_BASE_URL"
    }
    environment.update(ENVIRONMENT="development", TOKEN_ENCRYPTION_KEYS=TEST_ENCRYPTION_KEY)
    server = subprocess.Popen(
        [sys.executable, "-m", "src.cli", "serve", "--port", str(port)]
        + ["--sandbox", fresh_sandbox.base_url],
        env=environment,
        cwd=tmp_path,  # no `.env` of the checkout
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_health(base_url, server)
        async with httpx.AsyncClient(base_url=base_url) as client:
            authorize_url = await start_connect(client, key, org_id)
            assert authorize_url.startswith(f"{fresh_sandbox.base_url}/identity/connect/authorize")
            query = parse_qs(urlparse(authorize_url).query)
            assert query["redirect_uri"] == [f"{base_url}/external-accounting/xero/callback"]
            assert query["client_id"] == [SANDBOX_CONFIG.client_id]
            connected = await connect(client, key, org_id)
        assert len(connected["connections"]) == SANDBOX_CONFIG.tenants
    finally:
        server.terminate()
        server.wait(timeout=10)
