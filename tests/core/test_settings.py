"""Safe defaults: a deployment that forgets ENVIRONMENT or a secret is refused, with a sentence
that says what to set; development on embedded SQLite still starts with nothing configured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from src.core.crypto import EncryptionKeyMissing, TokenCipher
from src.core.settings import ConfigurationError, Settings
from src.main import create_app

SERVER_DATABASE = "postgresql://ledgersync@db.internal:5432/ledgersync"
KEY = Fernet.generate_key().decode()


def test_a_server_database_without_environment_is_production(tmp_path: Path) -> None:
    settings = Settings(database_url=SERVER_DATABASE, token_key_file=tmp_path / "key")
    assert settings.environment == "production"
    with pytest.raises(EncryptionKeyMissing) as raised:
        TokenCipher.from_settings(settings)
    assert not (tmp_path / "key").exists()  # no throwaway key next to a production database
    message = str(raised.value)
    assert "TOKEN_ENCRYPTION_KEYS is required" in message
    assert "server database" in message
    assert "Fernet.generate_key()" in message


def test_embedded_sqlite_without_environment_is_development(tmp_path: Path) -> None:
    settings = Settings(token_key_file=tmp_path / "key")
    assert settings.environment == "development"
    assert (
        TokenCipher.from_settings(settings).decrypt(
            TokenCipher.from_settings(settings).encrypt("x")
        )
        == "x"
    )
    assert (tmp_path / "key").exists()


def test_explicit_development_may_use_a_throwaway_key_on_any_database(tmp_path: Path) -> None:
    settings = Settings(
        environment="development", database_url=SERVER_DATABASE, token_key_file=tmp_path / "k"
    )
    assert TokenCipher.from_settings(settings).encrypt("x")


@pytest.mark.parametrize(
    "given",
    [
        pytest.param({"database_url": SERVER_DATABASE}, id="server-database"),
        pytest.param({"environment": "production"}, id="explicit-production"),
        pytest.param({"environment": "test"}, id="test"),
    ],
)
def test_the_service_refuses_to_start_without_a_xero_client_id(given: dict[str, Any]) -> None:
    settings = Settings.model_validate({**given, "token_encryption_keys": KEY})
    with pytest.raises(ConfigurationError, match="XERO_CLIENT_ID is required"):
        create_app(settings)
    assert create_app(settings.model_copy(update={"xero_client_id": "app-id"}))


def test_development_starts_without_a_xero_client_id(tmp_path: Path) -> None:
    assert create_app(Settings(token_key_file=tmp_path / "key"))


def _serve(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("XERO_", "TOKEN_"))}
    clean.pop("ENVIRONMENT", None)
    clean.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "src.cli", "serve", "--port", "1"],
        env={**clean, "PYTHONPATH": str(Path.cwd()), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_refuses_a_server_database_without_a_key_in_one_clear_line(tmp_path: Path) -> None:
    done = _serve({"DATABASE_URL": SERVER_DATABASE, "XERO_CLIENT_ID": "app-id"}, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("error: TOKEN_ENCRYPTION_KEYS is required")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "var").exists()
    done = _serve({"DATABASE_URL": SERVER_DATABASE, "TOKEN_ENCRYPTION_KEYS": KEY}, tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: XERO_CLIENT_ID is required")


def test_the_reserve_and_the_schedules_margin_follow_the_tiers_day_limit() -> None:
    """500 of 5,000 calls is a tenth of a tenant's day; on Xero's 1,000-call tier the same 500
    would keep half of it from our syncs. Set explicitly, they are kept."""
    default = Settings()
    assert (default.xero_daily_reserve, default.schedule_day_limit_margin) == (500, 500)
    small = Settings(xero_day_limit=1000)
    assert (small.xero_daily_reserve, small.schedule_day_limit_margin) == (100, 100)
    own = Settings(xero_day_limit=1000, xero_daily_reserve=250)
    assert (own.xero_daily_reserve, own.schedule_day_limit_margin) == (250, 100)
    with pytest.raises(ValidationError, match="XERO_DAILY_RESERVE must be less"):
        Settings(xero_day_limit=1000, xero_daily_reserve=1000)
