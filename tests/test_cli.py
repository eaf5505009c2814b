"""The operator commands, run as a person would (against a migrated SQLite file)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from typer.testing import CliRunner

from src.cli import app
from src.core.database import create_engine, create_session_factory
from src.core.settings import Settings, get_settings
from src.domains.external_accounting.connections.models import Connection
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


def _add_connection(org_id: str, tenant_id: str) -> None:
    """A connection as a finished connect flow leaves it (the list only reads it)."""

    async def add() -> None:
        engine = create_engine(get_settings().database_url)
        async with create_session_factory(engine)() as session:
            session.add(
                Connection(
                    organization_id=uuid.UUID(org_id),
                    tenant_id=tenant_id,
                    tenant_name="Acme NZ",
                    last_sync_at=datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
                )
            )
            await session.commit()
        await engine.dispose()

    asyncio.run(add())


@pytest.mark.usefixtures("cli_database")
def test_an_existing_member_is_refused_and_keys_are_minted_deliberately() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    acme = runner.invoke(app, ["orgs", "create", "Acme"]).stdout.strip()
    globex = runner.invoke(app, ["orgs", "create", "Globex"]).stdout.strip()
    first = runner.invoke(app, ["users", "create", "Ann@acme.test", "--org", acme])
    assert first.exit_code == 0

    again = runner.invoke(
        app, ["users", "create", "ann@acme.test", "--org", acme, "--role", "owner"]
    )
    assert again.exit_code != 0
    assert "already a member" in again.output
    assert "lsk_" not in again.output
    # Another organisation is a new membership, with a key of its own.
    assert runner.invoke(app, ["users", "create", "ann@acme.test", "--org", globex]).exit_code == 0

    minted = runner.invoke(
        app, ["keys", "create", "--user", "ann@acme.test", "--org", acme, "--expires-in-days", "7"]
    )
    assert minted.exit_code == 0, minted.output
    assert minted.stdout.strip().startswith("lsk_")
    assert "expires at" in minted.stderr
    assert minted.stdout.strip() != first.stdout.strip()
    stranger = runner.invoke(app, ["keys", "create", "--user", "bob@acme.test", "--org", acme])
    assert stranger.exit_code == 2
    assert "not a member" in stranger.output

    promoted = runner.invoke(
        app, ["users", "set-role", "ann@acme.test", "--org", acme, "--role", "admin"]
    )
    assert promoted.exit_code == 0, promoted.output
    members = runner.invoke(app, ["users", "list", "--org", acme, "--json"]).stdout.splitlines()
    assert [json.loads(m)["role"] for m in members] == ["admin"]
    bad_expiry = runner.invoke(
        app, ["keys", "create", "--user", "ann@acme.test", "--org", acme, "--expires-in-days", "0"]
    )
    assert bad_expiry.exit_code != 0


@pytest.mark.usefixtures("cli_database")
def test_operator_lists_show_what_exists_and_never_a_secret() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    acme = runner.invoke(app, ["orgs", "create", "Acme"]).stdout.strip()
    globex = runner.invoke(app, ["orgs", "create", "Globex"]).stdout.strip()
    ann = runner.invoke(app, ["users", "create", "ann@acme.test", "--org", acme, "--role", "admin"])
    bob = runner.invoke(
        app, ["users", "create", "bob@globex.test", "--org", globex, "--expires-in-days", "30"]
    )
    ann_key, bob_key = ann.stdout.strip(), bob.stdout.strip()
    assert runner.invoke(app, ["keys", "revoke", ann_key]).exit_code == 0
    _add_connection(acme, "tenant-acme")

    orgs = runner.invoke(app, ["orgs", "list"])
    assert orgs.exit_code == 0
    header, *rows = orgs.stdout.splitlines()
    assert header.split() == ["id", "name", "created_at", "members"]
    assert [row.split()[:2] for row in rows] == [[acme, "Acme"], [globex, "Globex"]]
    assert [row.split()[-1] for row in rows] == ["1", "1"]
    # Aligned columns: every row's second column starts where the header's does.
    assert rows[0].index("Acme") == rows[1].index("Globex") == header.index("name")

    users = [
        json.loads(line)
        for line in runner.invoke(app, ["users", "list", "--json"]).stdout.splitlines()
    ]
    assert [(u["email"], u["organization"], u["role"]) for u in users] == [
        ("ann@acme.test", "Acme", "admin"),
        ("bob@globex.test", "Globex", "member"),
    ]

    every_key = runner.invoke(app, ["keys", "list"])
    by_org = runner.invoke(app, ["keys", "list", "--org", globex, "--json"])
    for listing in (every_key, by_org):
        assert listing.exit_code == 0
        for key in (ann_key, bob_key):
            assert key not in listing.output
            assert key.split("_", 2)[2] not in listing.output  # the secret part
    assert ann_key.split("_")[1] in every_key.stdout
    assert bob_key.split("_")[1] in every_key.stdout
    (bob_listed,) = [json.loads(line) for line in by_org.stdout.splitlines()]
    assert bob_listed["prefix"] == bob_key.split("_")[1]
    assert bob_listed["email"] == "bob@globex.test"
    assert bob_listed["organization_id"] == globex
    assert bob_listed["expires_at"] is not None
    assert bob_listed["revoked_at"] is None
    assert set(bob_listed) == {
        "prefix", "email", "organization_id", "created_at", "expires_at", "revoked_at"
    }  # fmt: skip
    (ann_row,) = [line for line in every_key.stdout.splitlines() if "ann@acme.test" in line]
    assert ann_row.split()[-1] != "-"  # revoked, with when

    connections = runner.invoke(app, ["connections", "list", "--json"])
    assert connections.exit_code == 0, connections.output
    (listed,) = [json.loads(line) for line in connections.stdout.splitlines()]
    assert (listed["organization_id"], listed["tenant_id"], listed["status"]) == (
        acme,
        "tenant-acme",
        "active",
    )
    assert listed["last_sync_at"] == "2026-12-01T09:30:00+00:00"
    assert runner.invoke(app, ["connections", "list", "--org", globex]).stdout.splitlines() == [
        "id  organization_id  provider  tenant_id  tenant_name  status  connected_at  last_sync_at"
    ]


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
