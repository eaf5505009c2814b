from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.database import utcnow
from src.domains.organizations.exceptions import (
    AlreadyAMember,
    InsufficientRole,
    InvalidApiKey,
    InvalidExpiry,
    InvalidRole,
    NotAMember,
    OrganizationNotFound,
    UserNotAMember,
)
from src.domains.organizations.models import ApiKey, Role
from src.domains.organizations.service import OrganizationService
from tests.factories import add_member, altered, create_org_with_user


async def test_api_keys_are_stored_only_as_hashes_and_authenticate(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    _, user, key = await create_org_with_user(session_factory)
    async with session_factory() as session:
        stored = (await session.execute(select(ApiKey))).scalars().all()
        assert [k.user_id for k in stored] == [user.id]
        assert key not in repr([(k.prefix, k.key_hash) for k in stored])
        assert key.split("_", 2)[2] not in stored[0].key_hash
        assert (await OrganizationService(session).authenticate(key)).user.id == user.id


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
            await service.authenticate(altered(key))
        assert await service.revoke_key(key.split("_")[1])
        assert not await service.revoke_key("nope")
        with pytest.raises(InvalidApiKey, match="revoked"):
            await service.authenticate(key)


async def test_roles_gate_what_a_user_may_do(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    organization, _, admin_key = await create_org_with_user(session_factory, Role.ADMIN)
    other, _, outsider_key = await create_org_with_user(session_factory, Role.OWNER, name="Other")
    await add_member(session_factory, organization, Role.MEMBER, "member@acme.test")
    async with session_factory() as session:
        service = OrganizationService(session)
        admin = await service.authenticate(admin_key)
        outsider = await service.authenticate(outsider_key)
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


async def test_a_key_acts_for_its_own_organisation_only(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    acme, user, acme_key = await create_org_with_user(session_factory, Role.ADMIN)
    globex, _, _ = await create_org_with_user(session_factory, Role.OWNER, name="Globex")
    # The same user, an admin of Globex too: their Acme key still opens Acme only.
    globex_key = await add_member(session_factory, globex, Role.ADMIN, user.email)
    async with session_factory() as session:
        service = OrganizationService(session)
        acme_caller = await service.authenticate(acme_key)
        globex_caller = await service.authenticate(globex_key)
        assert acme_caller.user.id == globex_caller.user.id == user.id
        assert (await service.require_role(acme_caller, acme.id, Role.ADMIN)).role == Role.ADMIN
        assert (await service.require_role(globex_caller, globex.id, Role.ADMIN)).role == "admin"
        with pytest.raises(NotAMember, match="not a member") as refused:
            await service.require_role(acme_caller, globex.id, Role.MEMBER)
    assert refused.value.detail == "You are not a member of this organisation."


async def test_an_expired_key_is_refused_saying_it_expired(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    organization, user, _ = await create_org_with_user(session_factory)
    async with session_factory() as session:
        service = OrganizationService(session)
        issued = await service.issue_key(user, organization.id, expires_in_days=30)
        await session.commit()
        assert issued.expires_at is not None
        assert (await service.authenticate(issued.key)).organization_id == organization.id
        stored = await session.scalar(select(ApiKey).where(ApiKey.prefix == issued.prefix))
        assert stored is not None
        stored.expires_at = utcnow() - timedelta(seconds=1)
        await session.commit()
        with pytest.raises(InvalidApiKey, match="expired at") as refused:
            await service.authenticate(issued.key)
        assert refused.value.status_code == 401
        with pytest.raises(InvalidExpiry):
            await service.issue_key(user, organization.id, expires_in_days=0)


async def test_adding_an_existing_member_refuses_instead_of_changing_the_role(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    organization, user, _ = await create_org_with_user(session_factory, Role.MEMBER)
    async with session_factory() as session:
        service = OrganizationService(session)
        with pytest.raises(AlreadyAMember, match="already a member"):
            await service.add_user(user.email.upper(), organization.id, "owner")
        assert await service.list_keys(organization.id) == await service.list_keys(None)
        assert len(await service.list_keys(None)) == 1
        assert [m.role for m in await service.list_members(organization.id)] == ["member"]
        await service.set_role(user.email, organization.id, "admin")
        await service.create_key(user.email, organization.id)
        await session.commit()
        assert [m.role for m in await service.list_members(None)] == ["admin"]
        assert len(await service.list_keys(organization.id)) == 2
        with pytest.raises(UserNotAMember):
            await service.create_key("nobody@acme.test", organization.id)
