"""Operator command `ledgersync keys rotate-encryption`: the connections hold the encrypted
token sets."""

from __future__ import annotations

import typer

from src.core.commands import run_in_transaction
from src.core.crypto import TokenCipher
from src.core.settings import get_settings
from src.domains.external_accounting.connections.encryption_keys import rotate_encryption


def rotate_encryption_keys() -> None:
    """Re-encrypt every stored token with the first key of TOKEN_ENCRYPTION_KEYS."""
    cipher = TokenCipher.from_settings(get_settings())
    count = run_in_transaction(lambda s: rotate_encryption(s, cipher))
    typer.echo(f"re-encrypted {count} secrets")
