"""Test data builders that go through the real services."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.domains.organizations.models import Organization, Role, User
from src.domains.organizations.service import OrganizationService


async def create_org_with_user(
    session_factory: async_sessionmaker[AsyncSession],
    role: Role = Role.ADMIN,
    name: str = "Acme",
    email: str | None = None,
) -> tuple[Organization, User, str]:
    """An organisation with one user of `role`, and that user's API key."""
    async with session_factory() as session:
        service = OrganizationService(session)
        organization = await service.create_organization(name)
        user, issued = await service.add_user(
            email or f"{role.value}@{name.lower()}.test", organization.id, role.value
        )
        await session.commit()
    return organization, user, issued.key


async def add_member(
    session_factory: async_sessionmaker[AsyncSession],
    organization: Organization,
    role: Role,
    email: str,
) -> str:
    """Another user of `organization`; returns their API key."""
    async with session_factory() as session:
        _, issued = await OrganizationService(session).add_user(email, organization.id, role.value)
        await session.commit()
    return issued.key


def bearer(key: str) -> dict[str, str]:
    """The Authorization header for an API key."""
    return {"Authorization": f"Bearer {key}"}


def altered(secret: str) -> str:
    """`secret` with its last character changed: never `secret` itself (a fixed replacement
    is the secret by chance whenever the secret already ends in it)."""
    return secret[:-1] + ("1" if secret.endswith("0") else "0")
