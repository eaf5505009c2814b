"""All SQL of the organisations domain."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from src.domains.organizations.models import ApiKey, Membership, Organization, User


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
