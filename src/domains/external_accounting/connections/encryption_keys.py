"""Re-encrypting stored secrets after an encryption key rotation."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from src.core.crypto import TokenCipher
from src.domains.external_accounting.connections.repository import (
    GrantRepository,
    OAuthStateRepository,
    RevocationRepository,
)


async def rotate_encryption(session: AsyncSession, cipher: TokenCipher) -> int:
    """Re-encrypt every token (pending revocations' too) and PKCE verifier with the primary key;
    returns how many.

    The service keeps refreshing tokens meanwhile, so a token set is rewritten only if it is
    still the version we read (compare-and-set on `token_version`); when a refresh committed in
    between, the new token set is read and re-encrypted instead, never overwritten with the old."""
    count = 0
    grants = GrantRepository(session)
    for grant_id in await grants.list_ids():
        while (grant := await grants.read(grant_id)) is not None:
            secrets = [grant.access_token_encrypted, grant.refresh_token_encrypted]
            rotated = [cipher.rotate(value) if value else value for value in secrets]
            if await grants.reencrypt(
                grant_id,
                version=grant.token_version,
                access_token_encrypted=rotated[0],
                refresh_token_encrypted=rotated[1],
            ):
                count += sum(1 for value in secrets if value)
                break
    for state in await OAuthStateRepository(session).list_all():
        state.code_verifier_encrypted = cipher.rotate(state.code_verifier_encrypted)
        count += 1
    # A revocation still waiting for Xero must stay readable once the old key is retired.
    for revocation in await RevocationRepository(session).list_all():
        revocation.refresh_token_encrypted = cipher.rotate(revocation.refresh_token_encrypted)
        count += 1
    return count
