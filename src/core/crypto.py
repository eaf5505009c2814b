"""Authenticated encryption of secrets at rest (OAuth tokens, PKCE verifiers).

Keys come from `TOKEN_ENCRYPTION_KEYS` (comma-separated Fernet keys): the first encrypts, all
decrypt, so a key is rotated by putting the new one first and running
`ledgersync keys rotate-encryption`. In development (ENVIRONMENT=development, or ENVIRONMENT unset
on embedded SQLite) a key file is created on first use; anywhere else a missing key refuses to
start: a server database with a throwaway key file loses every token with that file."""

from __future__ import annotations

import logging
import os

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from src.core.errors import LedgersyncError
from src.core.settings import ConfigurationError, Settings

logger = logging.getLogger(__name__)


class EncryptionKeyMissing(ConfigurationError):
    """Raised at start-up outside development when no encryption key is configured."""


class DecryptionFailed(LedgersyncError):
    code = "decryption_failed"
    status_code = 500


class TokenCipher:
    """Encrypts and decrypts short secrets with MultiFernet."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise EncryptionKeyMissing("no token encryption key")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenCipher:
        """The cipher for the configured keys (or the development key file)."""
        configured = [
            k.strip() for k in settings.token_encryption_keys.get_secret_value().split(",")
        ]
        keys = [k for k in configured if k]
        if keys:
            return cls(keys)
        if settings.environment != "development":
            why = (
                f"ENVIRONMENT is {settings.environment}"
                if "environment" in settings.model_fields_set
                else "DATABASE_URL is a server database, so ENVIRONMENT defaults to production"
            )
            raise EncryptionKeyMissing(
                f"TOKEN_ENCRYPTION_KEYS is required ({why}). Generate a key with: "
                "python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())' "
                "(or set ENVIRONMENT=development for a throwaway key file)."
            )
        return cls([_development_key(settings)])

    def encrypt(self, plaintext: str) -> str:
        """Ciphertext (URL-safe text) of `plaintext`."""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """The plaintext; raises DecryptionFailed when no key fits or the data was altered."""
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as error:
            raise DecryptionFailed(
                "A stored secret could not be decrypted with any key."
            ) from error

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt with the primary key."""
        return self._fernet.rotate(ciphertext.encode()).decode()


def _development_key(settings: Settings) -> str:
    path = settings.token_key_file
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key)
    logger.warning(
        "generated a development token encryption key; set TOKEN_ENCRYPTION_KEYS in production",
        extra={"key_file": str(path)},
    )
    return key
