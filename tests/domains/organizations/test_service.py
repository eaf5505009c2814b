from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.domains.organizations.exceptions import (
    InsufficientRole,
    InvalidApiKey,
    InvalidRole,
    NotAMember,
    OrganizationNotFound,
)
from src.domains.organizations.models import ApiKey, Role
from src.domains.organizations.service import OrganizationService
from tests.factories import add_member, create_org_with_user


async def test_api_keys_are_stored_only_as_hashes_and_authenticate(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    _, user, key = await create_org_with_user(session_factory)
    async with session_factory() as session:
        stored = (await session.execute(select(ApiKey))).scalars().all()
        assert [k.user_id for k in stored] == [user.id]
        assert key not in repr([(k.prefix, k.key_hash) for k in stored])
        assert key.split("_", 2)[2] not in stored[0].key_hash
        assert (await OrganizationService(session).authenticate(key)).id == user.id


@pytest.mark.parametrize("broken", ["nonsense", "lsk_abc_def", "lsk__", ""])
async def test_malformed_or_unknown_keys_are_refused(
    session_factory: async_sessionmaker[AsyncSession], broken: str
) -> None:
    async with session_factory() as session:
        with pytest.raises(InvalidApiKey):
            await OrganizationService(session).authenticate(broken)


async def test_a_tampered_or_revoked_key_is_refused(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    _, _, key = await create_org_with_user(session_factory)
    async with session_factory() as session:
        service = OrganizationService(session)
        with pytest.raises(InvalidApiKey, match="not valid"):
            await service.authenticate(key[:-2] + "xx")
        assert await service.revoke_key(key.split("_")[1])
        assert not await service.revoke_key("nope")
        with pytest.raises(InvalidApiKey, match="revoked"):
            await service.authenticate(key)


async def test_roles_gate_what_a_user_may_do(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    organization, admin, _ = await create_org_with_user(session_factory, Role.ADMIN)
    other, outsider, _ = await create_org_with_user(session_factory, Role.OWNER, name="Other")
    await add_member(session_factory, organization, Role.MEMBER, "member@acme.test")
    async with session_factory() as session:
        service = OrganizationService(session)
        member = await service.authenticate(
            await add_member(session_factory, organization, Role.MEMBER, "member2@acme.test")
        )
        assert (await service.require_role(admin, organization.id, Role.ADMIN)).role == "admin"
        assert await service.require_role(member, organization.id, Role.MEMBER)
        with pytest.raises(InsufficientRole):
            await service.require_role(member, organization.id, Role.ADMIN)
        with pytest.raises(NotAMember):
            await service.require_role(outsider, organization.id, Role.MEMBER)
        with pytest.raises(OrganizationNotFound):
            await service.require_role(admin, other.id.__class__(int=1), Role.MEMBER)
        with pytest.raises(InvalidRole):
            await service.add_user("x@y.z", organization.id, "boss")
