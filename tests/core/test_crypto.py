from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.crypto import DecryptionFailed, EncryptionKeyMissing, TokenCipher
from src.core.settings import Settings
from src.domains.external_accounting.connections.encryption_keys import rotate_encryption
from src.domains.external_accounting.connections.models import OAuthGrant, PendingRevocation
from tests.factories import create_org_with_user


def test_ciphertext_round_trips_and_detects_tampering() -> None:
    cipher = TokenCipher([Fernet.generate_key().decode()])
    sealed = cipher.encrypt("refresh-token-value")
    assert "refresh-token-value" not in sealed
    assert cipher.decrypt(sealed) == "refresh-token-value"
    with pytest.raises(DecryptionFailed):
        cipher.decrypt(sealed[:-4] + "AAAA")


async def test_key_rotation_re_encrypts_every_token(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    organization, _, _ = await create_org_with_user(session_factory)
    before = TokenCipher([old])
    async with session_factory() as session:
        session.add(
            OAuthGrant(
                organization_id=organization.id,
                access_token_encrypted=before.encrypt("a"),
                refresh_token_encrypted=before.encrypt("r"),
            )
        )
        session.add(
            PendingRevocation(reason="replaced", refresh_token_encrypted=before.encrypt("spent"))
        )
        await session.commit()
        assert await rotate_encryption(session, TokenCipher([new, old])) == 3
        await session.commit()
        grant = (await session.execute(select(OAuthGrant))).scalar_one()
        revocation = (await session.execute(select(PendingRevocation))).scalar_one()
    assert grant is not None
    assert TokenCipher([new]).decrypt(grant.refresh_token_encrypted or "") == "r"
    assert TokenCipher([new]).decrypt(revocation.refresh_token_encrypted) == "spent"
    with pytest.raises(DecryptionFailed):
        TokenCipher([old]).decrypt(grant.refresh_token_encrypted or "")


def test_production_without_a_key_refuses_to_start(tmp_path: Path) -> None:
    settings = Settings(environment="production", token_key_file=tmp_path / "k")
    with pytest.raises(EncryptionKeyMissing):
        TokenCipher.from_settings(settings)
    assert not (tmp_path / "k").exists()


def test_development_generates_a_private_key_file_once(tmp_path: Path) -> None:
    settings = Settings(environment="development", token_key_file=tmp_path / "var" / "key")
    first = TokenCipher.from_settings(settings).encrypt("x")
    mode = (tmp_path / "var" / "key").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert TokenCipher.from_settings(settings).decrypt(first) == "x"
