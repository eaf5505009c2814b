"""Organisations, users, roles and API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

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
    UserNotFound,
)
from src.domains.organizations.models import ApiKey, Membership, Organization, Role, User
from src.domains.organizations.repository import (
    KeyListing,
    MemberListing,
    OrganizationListing,
    OrganizationRepository,
)

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
    expires_at: datetime | None


@dataclass(frozen=True)
class ApiCaller:
    """Who a request's API key speaks for: its user, in the one organisation it was issued for."""

    user: User
    organization_id: uuid.UUID
    # The key itself (a console sign-in remembers it, to end with it).
    api_key_id: uuid.UUID | None = None


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
        self,
        email: str,
        organization_id: uuid.UUID,
        role: str,
        *,
        expires_in_days: int | None = None,
    ) -> tuple[User, IssuedKey]:
        """Make a user (new, or of another organisation) a member with `role`, and issue them a
        key for this organisation. An existing member is refused: changing a role and minting
        another key are deliberate acts (`set_role`, `create_key`), never a side effect."""
        parsed_role = parse_role(role)
        await self._organization(organization_id)
        user = await self.repository.get_user_by_email(email.lower())
        if user is None:
            user = User(email=email.lower())
            await self.repository.add(user)
        membership = await self.repository.get_membership(organization_id, user.id)
        if membership is not None:
            raise AlreadyAMember(
                f"{user.email} is already a member of organisation {organization_id} "
                f"(role {membership.role}): change the role with `users set-role`, "
                "mint another key with `keys create`."
            )
        await self.repository.add(
            Membership(organization_id=organization_id, user_id=user.id, role=parsed_role.value)
        )
        return user, await self.issue_key(user, organization_id, expires_in_days=expires_in_days)

    async def set_role(self, email: str, organization_id: uuid.UUID, role: str) -> Membership:
        """Change a member's role in the organisation."""
        parsed_role = parse_role(role)
        _, membership = await self._member(email, organization_id)
        membership.role = parsed_role.value
        return membership

    async def create_key(
        self, email: str, organization_id: uuid.UUID, *, expires_in_days: int | None = None
    ) -> IssuedKey:
        """Another API key for a member, acting for that organisation only."""
        user, _ = await self._member(email, organization_id)
        return await self.issue_key(user, organization_id, expires_in_days=expires_in_days)

    async def issue_key(
        self, user: User, organization_id: uuid.UUID, *, expires_in_days: int | None = None
    ) -> IssuedKey:
        """A new random API key for `user`, valid for `organization_id` only, and until
        `expires_in_days` from now if given."""
        if expires_in_days is not None and expires_in_days < 1:
            raise InvalidExpiry("A key's expiry must be at least one day away.")
        expires_at = None if expires_in_days is None else utcnow() + timedelta(expires_in_days)
        prefix = secrets.token_hex(6)
        key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
        await self.repository.add(
            ApiKey(
                user_id=user.id,
                organization_id=organization_id,
                prefix=prefix,
                key_hash=hash_api_key(key),
                expires_at=expires_at,
            )
        )
        return IssuedKey(key=key, prefix=prefix, expires_at=expires_at)

    async def revoke_key(self, key_or_prefix: str) -> bool:
        """Revoke a key given whole or by its prefix; False if there is no such key."""
        parts = key_or_prefix.split("_")
        prefix = parts[1] if len(parts) >= 3 and parts[0] == KEY_PREFIX else key_or_prefix
        api_key = await self.repository.get_api_key(prefix)
        if api_key is None:
            return False
        api_key.revoked_at = api_key.revoked_at or utcnow()
        return True

    async def authenticate(self, key: str) -> ApiCaller:
        """Who an API key speaks for; InvalidApiKey for unknown, malformed, revoked or expired
        keys."""
        parts = key.split("_")
        if len(parts) < 3 or parts[0] != KEY_PREFIX:
            raise InvalidApiKey("The API key is malformed.")
        api_key = await self.repository.get_api_key(parts[1])
        if api_key is None or not hmac.compare_digest(api_key.key_hash, hash_api_key(key)):
            raise InvalidApiKey("The API key is not valid.")
        return await self._caller_of(api_key)

    async def caller_of_key(self, api_key_id: uuid.UUID) -> ApiCaller:
        """Who the key of that id speaks for, checked as `authenticate` checks a key (a console
        sign-in holds the key's id, never the key); InvalidApiKey once it is revoked, expired or
        gone."""
        api_key = await self.repository.get_api_key_by_id(api_key_id)
        if api_key is None:
            raise InvalidApiKey("The API key no longer exists.")
        return await self._caller_of(api_key)

    async def _caller_of(self, api_key: ApiKey) -> ApiCaller:
        if api_key.revoked_at is not None:
            raise InvalidApiKey("The API key has been revoked.")
        if api_key.expires_at is not None and api_key.expires_at <= utcnow():
            raise InvalidApiKey(
                f"The API key expired at {api_key.expires_at.isoformat(timespec='seconds')}; "
                "ask an operator for a new one (`ledgersync keys create`)."
            )
        user = await self.repository.get_user(api_key.user_id)
        if user is None:
            raise UserNotFound("The API key's user no longer exists.")
        return ApiCaller(user=user, organization_id=api_key.organization_id, api_key_id=api_key.id)

    async def require_role(
        self, caller: ApiCaller, organization_id: uuid.UUID, role: Role
    ) -> OrgAccess:
        """The caller's access to the organisation, if their key was issued for it and their role
        there is at least `role`."""
        await self._organization(organization_id)
        membership = await self.repository.get_membership(organization_id, caller.user.id)
        # Another organisation's key gets a non-member's answer, word for word: 403 without
        # details, so a caller learns nothing about the organisation either way.
        if membership is None or caller.organization_id != organization_id:
            raise NotAMember("You are not a member of this organisation.")
        access = OrgAccess(
            organization_id=organization_id, user=caller.user, role=Role(membership.role)
        )
        if not access.at_least(role):
            raise InsufficientRole(f"This needs the {role.value} role or higher.")
        return access

    async def list_organizations(self) -> list[OrganizationListing]:
        """Every organisation with its member count, oldest first."""
        return await self.repository.list_organizations()

    async def list_members(self, organization_id: uuid.UUID | None) -> list[MemberListing]:
        """Memberships (one organisation's, or all), oldest first."""
        return await self.repository.list_members(organization_id)

    async def list_keys(self, organization_id: uuid.UUID | None) -> list[KeyListing]:
        """API keys by prefix (one organisation's, or all), oldest first: never a secret, which
        is not stored anyway."""
        return await self.repository.list_keys(organization_id)

    async def _organization(self, organization_id: uuid.UUID) -> Organization:
        organization = await self.repository.get_organization(organization_id)
        if organization is None:
            raise OrganizationNotFound(f"Organisation {organization_id} does not exist.")
        return organization

    async def _member(self, email: str, organization_id: uuid.UUID) -> tuple[User, Membership]:
        """The user of that email and their membership, for an operator's command."""
        await self._organization(organization_id)
        user = await self.repository.get_user_by_email(email.lower())
        membership = (
            None if user is None else await self.repository.get_membership(organization_id, user.id)
        )
        if user is None or membership is None:
            raise UserNotAMember(
                f"{email.lower()} is not a member of organisation {organization_id}: "
                "add them with `users create`."
            )
        return user, membership


def parse_role(role: str) -> Role:
    """The role named, or InvalidRole."""
    try:
        return Role(role)
    except ValueError as error:
        raise InvalidRole(f"Role must be one of {', '.join(r.value for r in Role)}.") from error
