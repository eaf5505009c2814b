"""No secret or customer data in what we print: the access log, our own lines (text and JSON),
and SQLAlchemy's errors and echo log. Each leak path is checked on real log output."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.database import create_engine, utcnow
from src.core.logging import configure_logging
from src.core.migrations import upgrade_database
from src.domains.organizations.models import Organization
from src.xero_sandbox.server import free_port

logger = logging.getLogger("tests.core.test_logging")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging replaces the root handlers: put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


@pytest.mark.parametrize("json_lines", [False, True], ids=["text", "json"])
def test_the_access_log_never_shows_query_strings(tmp_path: Path, json_lines: bool) -> None:
    """Through `ledgersync serve` (uvicorn's own access log): no code or state in any line; as
    JSON, the access line is fields, with the request's id."""
    database = tmp_path / "serve.db"
    upgrade_database(f"sqlite+aiosqlite:///{database}")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("XERO_", "TOKEN_"))},
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "ENVIRONMENT": "test",
        "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "XERO_CLIENT_ID": "app-id",
        "LOG_JSON": "true" if json_lines else "false",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "src.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "ledgersync serve did not start"
                time.sleep(0.1)
        answer = httpx.get(
            f"{base}/external-accounting/xero/callback",
            params={"code": "AUTHCODE-6f1c2b", "state": "STATE-9a8e7d"},
            headers={"X-Request-ID": "access-test-1"},
        )
        assert answer.status_code < 500
        assert answer.headers["x-request-id"] == "access-test-1"
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert "GET /external-accounting/xero/callback HTTP/1.1" in output  # the line is there...
    assert "AUTHCODE-6f1c2b" not in output  # ...without the code and the state
    assert "STATE-9a8e7d" not in output
    if json_lines:
        lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        assert len(lines) == len(output.splitlines()), output  # nothing but JSON lines
        [access] = [
            line
            for line in lines
            if line["logger"] == "uvicorn.access" and line.get("request_id") == "access-test-1"
        ]
        assert access["method"] == "GET"
        assert access["path"] == "/external-accounting/xero/callback"
        assert access["status"] == answer.status_code


SECRETS = {
    "access": "eyJhbGciOi.eyJzdWIiOiIx.c2lnbmF0dXJl",
    "refresh": "rt-3c9f0e7a1b2d4c6e",
    "id": "idt-5d1e2f3a",
    "secret": "cs-77aa88bb",
    "verifier": "pkce-verifier-0011223344",
    "code": "authcode-99ff00",
    "state": "state-abcdef12",
    "basic": "c2FuZGJveDpzZWNyZXQ=",
    "api_key": "lsk_0123456789ab_Zq9yXw8vUt7sRq6pOn5mLk4jIh3gFe2dCb1a",
}


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("json_lines", [False, True])
def test_secrets_are_masked_in_every_shape_we_might_print(
    json_lines: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", json_lines=json_lines)
    s = SECRETS
    logger.info(
        "token answer %s",
        f'{{"access_token": "{s["access"]}", "refresh_token": "{s["refresh"]}", '
        f'"id_token": "{s["id"]}"}}',
    )
    logger.info("form %s", {"client_secret": s["secret"], "code_verifier": s["verifier"]})
    logger.info("callback code=%s&state=%s", s["code"], s["state"])
    logger.info("headers %s", {"Authorization": f"Basic {s['basic']}"})
    logger.warning("request failed", extra={"api_key_seen": f"Bearer {s['api_key']}"})
    logger.warning("a key in a sentence: %s", s["api_key"])
    printed = capsys.readouterr().err
    assert printed.count("\n") == 6
    for name, secret in SECRETS.items():
        assert secret not in printed, f"{name} leaked: {printed}"
    assert "lsk_0123456789ab_***" in printed  # the key's public prefix still identifies it


@pytest.mark.usefixtures("restore_logging")
async def test_database_errors_and_the_echo_log_carry_no_bound_parameters(
    database_url: str,
    session_factory: async_sessionmaker[AsyncSession],
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO")
    engine = create_engine(database_url, echo=True)  # the echo log prints every statement
    personal = "Jane Doe, 12 Private Lane, jane@example.test"
    row = {"id": uuid.uuid4(), "name": personal, "created_at": utcnow()}
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(Organization).values(**row))
        with pytest.raises(IntegrityError) as raised:
            async with engine.begin() as connection:
                await connection.execute(insert(Organization).values(**row))
        logger.error("storing failed", exc_info=raised.value)
    finally:
        await engine.dispose()
    assert personal not in str(raised.value)
    printed = capsys.readouterr()
    assert "INSERT INTO organizations" in printed.out + printed.err
    assert personal not in printed.out
    assert personal not in printed.err
