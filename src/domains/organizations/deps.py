"""Authentication of API callers, and the errors each level of access can answer."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from src.core.deps import SessionDep
from src.core.errors import LedgersyncError, ValidationFailed
from src.domains.organizations.exceptions import (
    InsufficientRole,
    InvalidApiKey,
    NotAMember,
    OrganizationNotFound,
)
from src.domains.organizations.models import Role
from src.domains.organizations.service import ApiCaller, OrgAccess, OrganizationService

# Declared as a security scheme so that the OpenAPI document says which routes need a key; it
# does not refuse by itself (auto_error=False), so a missing key gets our own 401 body.
api_key_scheme = HTTPBearer(
    scheme_name="ApiKey",
    bearerFormat="lsk_<prefix>_<secret>",
    description="An API key issued by `ledgersync users create`",
    auto_error=False,
)


async def current_caller(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(api_key_scheme)],
) -> ApiCaller:
    """The user, and the organisation, behind `Authorization: Bearer <api key>`."""
    if credentials is None or not credentials.credentials.strip():
        raise InvalidApiKey("Send your API key as 'Authorization: Bearer <key>'.")
    return await OrganizationService(session).authenticate(credentials.credentials.strip())


CallerDep = Annotated[ApiCaller, Depends(current_caller)]


async def optional_caller(request: Request, session: SessionDep) -> ApiCaller | None:
    """The caller when the request carries an API key (a browser's request does not);
    a key that is sent must be valid. Not declared as a security scheme: the route is public."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return await OrganizationService(session).authenticate(key.strip())


OptionalCallerDep = Annotated[ApiCaller | None, Depends(optional_caller)]

# The organisation a request acts for, declared once: routes and their dependencies share it, so
# the OpenAPI document describes it the same way wherever it appears.
OrgId = Annotated[
    uuid.UUID,
    Query(
        description="The customer organisation", examples=["6f1c2a8e-3b4d-4c5e-9f60-718293a4b5c6"]
    ),
]


async def member_of_org(caller: CallerDep, org_id: OrgId, session: SessionDep) -> OrgAccess:
    """The caller's access to `org_id`, as a member or higher, with a key issued for it."""
    return await OrganizationService(session).require_role(caller, org_id, Role.MEMBER)


async def admin_of_org(caller: CallerDep, org_id: OrgId, session: SessionDep) -> OrgAccess:
    """The caller's access to `org_id`, as an admin or owner, with a key issued for it."""
    return await OrganizationService(session).require_role(caller, org_id, Role.ADMIN)


# Declared on a route, these are its access check: the body never checks roles.
MemberOfOrg = Annotated[OrgAccess, Depends(member_of_org)]
AdminOfOrg = Annotated[OrgAccess, Depends(admin_of_org)]

# What a route declaring `MemberOfOrg` or `AdminOfOrg` can answer besides its own errors: pass
# them to `error_responses` so the OpenAPI document lists every status.
MEMBER_ERRORS: tuple[type[LedgersyncError], ...] = (
    InvalidApiKey,
    NotAMember,
    OrganizationNotFound,
    ValidationFailed,
)
ADMIN_ERRORS: tuple[type[LedgersyncError], ...] = (*MEMBER_ERRORS, InsufficientRole)
