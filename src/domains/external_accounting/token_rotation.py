"""Re-encrypting stored secrets after an encryption key rotation."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from src.core.crypto import TokenCipher
from src.domains.external_accounting.repository import GrantRepository, OAuthStateRepository


async def rotate_encryption(session: AsyncSession, cipher: TokenCipher) -> int:
    """Re-encrypt every token and PKCE verifier with the primary key; returns how many."""
    count = 0
    for grant in await GrantRepository(session).list_all():
        for field in ("access_token_encrypted", "refresh_token_encrypted"):
            value = getattr(grant, field)
            if value:
                setattr(grant, field, cipher.rotate(value))
                count += 1
    for state in await OAuthStateRepository(session).list_all():
        state.code_verifier_encrypted = cipher.rotate(state.code_verifier_encrypted)
        count += 1
    return count
