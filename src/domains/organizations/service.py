"""Organisations, users, roles and API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from src.core.database import utcnow
from src.domains.organizations.exceptions import (
    InsufficientRole,
    InvalidApiKey,
    InvalidRole,
    NotAMember,
    OrganizationNotFound,
    UserNotFound,
)
from src.domains.organizations.models import ApiKey, Membership, Organization, Role, User
from src.domains.organizations.repository import OrganizationRepository

ROLE_RANK = {Role.MEMBER: 0, Role.ADMIN: 1, Role.OWNER: 2}
KEY_PREFIX = "lsk"


def hash_api_key(key: str) -> str:
    """The stored form of an API key (keys are 256-bit random, so a plain SHA-256 suffices)."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class OrgAccess:
    """Who acts for which organisation, with which role: what an access check found."""

    organization_id: uuid.UUID
    user: User
    role: Role

    def at_least(self, role: Role) -> bool:
        """Whether this role is `role` or higher."""
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


@dataclass(frozen=True)
class IssuedKey:
    """A new API key: `key` is shown once and never stored."""

    key: str
    prefix: str


class OrganizationService:
    """Who belongs to which organisation, with which role, and API key authentication."""

    def __init__(self, session: AsyncSession) -> None:
        self.repository = OrganizationRepository(session)

    async def create_organization(self, name: str) -> Organization:
        """Create a customer organisation."""
        organization = Organization(name=name)
        await self.repository.add(organization)
        return organization

    async def organization_named(self, name: str) -> Organization:
        """The organisation of that name, created if there is none (the demo's, run again)."""
        found = await self.repository.first_organization_named(name)
        return found if found is not None else await self.create_organization(name)

    async def add_user(
        self, email: str, organization_id: uuid.UUID, role: str
    ) -> tuple[User, IssuedKey]:
        """Add (or reuse) a user, make them a member with `role`, and issue them an API key."""
        try:
            parsed_role = Role(role)
        except ValueError as error:
            raise InvalidRole(f"Role must be one of {', '.join(r.value for r in Role)}.") from error
        if await self.repository.get_organization(organization_id) is None:
            raise OrganizationNotFound(f"Organisation {organization_id} does not exist.")
        user = await self.repository.get_user_by_email(email.lower())
        if user is None:
            user = User(email=email.lower())
            await self.repository.add(user)
        membership = await self.repository.get_membership(organization_id, user.id)
        if membership is None:
            await self.repository.add(
                Membership(organization_id=organization_id, user_id=user.id, role=parsed_role.value)
            )
        else:
            membership.role = parsed_role.value
        return user, await self.issue_key(user)

    async def issue_key(self, user: User) -> IssuedKey:
        """A new random API key for `user`."""
        prefix = secrets.token_hex(6)
        key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
        await self.repository.add(
            ApiKey(user_id=user.id, prefix=prefix, key_hash=hash_api_key(key))
        )
        return IssuedKey(key=key, prefix=prefix)

    async def revoke_key(self, key_or_prefix: str) -> bool:
        """Revoke a key given whole or by its prefix; False if there is no such key."""
        parts = key_or_prefix.split("_")
        prefix = parts[1] if len(parts) >= 3 and parts[0] == KEY_PREFIX else key_or_prefix
        api_key = await self.repository.get_api_key(prefix)
        if api_key is None:
            return False
        api_key.revoked_at = api_key.revoked_at or utcnow()
        return True

    async def authenticate(self, key: str) -> User:
        """The user an API key belongs to; InvalidApiKey for unknown, malformed or revoked keys."""
        parts = key.split("_")
        if len(parts) < 3 or parts[0] != KEY_PREFIX:
            raise InvalidApiKey("The API key is malformed.")
        api_key = await self.repository.get_api_key(parts[1])
        if api_key is None or not hmac.compare_digest(api_key.key_hash, hash_api_key(key)):
            raise InvalidApiKey("The API key is not valid.")
        if api_key.revoked_at is not None:
            raise InvalidApiKey("The API key has been revoked.")
        user = await self.repository.get_user(api_key.user_id)
        if user is None:
            raise UserNotFound("The API key's user no longer exists.")
        return user

    async def require_role(self, user: User, organization_id: uuid.UUID, role: Role) -> OrgAccess:
        """The user's access to the organisation, if their role is at least `role`."""
        if await self.repository.get_organization(organization_id) is None:
            raise OrganizationNotFound(f"Organisation {organization_id} does not exist.")
        membership = await self.repository.get_membership(organization_id, user.id)
        if membership is None:
            # 403 without details: a non-member learns nothing about the organisation.
            raise NotAMember("You are not a member of this organisation.")
        access = OrgAccess(organization_id=organization_id, user=user, role=Role(membership.role))
        if not access.at_least(role):
            raise InsufficientRole(f"This needs the {role.value} role or higher.")
        return access
