"""All SQL of the organisations domain."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from src.domains.organizations.models import ApiKey, Membership, Organization, User


@dataclass(frozen=True)
class OrganizationListing:
    """An organisation as an operator's list shows it."""

    id: uuid.UUID
    name: str
    created_at: datetime
    members: int


@dataclass(frozen=True)
class MemberListing:
    """A user's membership as an operator's list shows it."""

    email: str
    organization_id: uuid.UUID
    organization: str
    role: str
    joined_at: datetime


@dataclass(frozen=True)
class KeyListing:
    """An API key as an operator's list shows it: its prefix, never a secret."""

    prefix: str
    email: str
    organization_id: uuid.UUID
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class OrganizationRepository:
    """Organisations, users, memberships and API keys."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_organization(self, organization_id: uuid.UUID) -> Organization | None:
        return await self.session.get(Organization, organization_id)

    async def first_organization_named(self, name: str) -> Organization | None:
        """The oldest organisation of that name (names are not unique)."""
        result = await self.session.execute(
            select(Organization).where(Organization.name == name).order_by(Organization.created_at)
        )
        return result.scalars().first()

    async def add(self, row: Organization | User | Membership | ApiKey) -> None:
        self.session.add(row)
        await self.session.flush()

    async def get_user_by_email(self, email: str) -> User | None:
        result = await self.session.execute(select(User).where(User.email == email))
        return result.scalar_one_or_none()

    async def get_user(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def get_membership(
        self, organization_id: uuid.UUID, user_id: uuid.UUID
    ) -> Membership | None:
        result = await self.session.execute(
            select(Membership).where(
                Membership.organization_id == organization_id, Membership.user_id == user_id
            )
        )
        return result.scalar_one_or_none()

    async def get_api_key(self, prefix: str) -> ApiKey | None:
        result = await self.session.execute(select(ApiKey).where(ApiKey.prefix == prefix))
        return result.scalar_one_or_none()

    async def get_api_key_by_id(self, api_key_id: uuid.UUID) -> ApiKey | None:
        return await self.session.get(ApiKey, api_key_id, populate_existing=True)

    async def list_organizations(self) -> list[OrganizationListing]:
        members = (
            select(func.count(Membership.id))
            .where(Membership.organization_id == Organization.id)
            .scalar_subquery()
        )
        result = await self.session.execute(
            select(Organization.id, Organization.name, Organization.created_at, members).order_by(
                Organization.created_at, Organization.id
            )
        )
        return [OrganizationListing(*row) for row in result.all()]

    async def list_members(self, organization_id: uuid.UUID | None) -> list[MemberListing]:
        statement = (
            select(
                User.email,
                Membership.organization_id,
                Organization.name,
                Membership.role,
                Membership.created_at,
            )
            .join(User, User.id == Membership.user_id)
            .join(Organization, Organization.id == Membership.organization_id)
            .order_by(Membership.created_at, Membership.id)
        )
        if organization_id is not None:
            statement = statement.where(Membership.organization_id == organization_id)
        return [MemberListing(*row) for row in (await self.session.execute(statement)).all()]

    async def list_keys(self, organization_id: uuid.UUID | None) -> list[KeyListing]:
        # Names the columns one by one: the hash never leaves the database.
        statement = (
            select(
                ApiKey.prefix,
                User.email,
                ApiKey.organization_id,
                ApiKey.created_at,
                ApiKey.expires_at,
                ApiKey.revoked_at,
            )
            .join(User, User.id == ApiKey.user_id)
            .order_by(ApiKey.created_at, ApiKey.id)
        )
        if organization_id is not None:
            statement = statement.where(ApiKey.organization_id == organization_id)
        return [KeyListing(*row) for row in (await self.session.execute(statement)).all()]
