"""Authentication of API callers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from src.core.deps import SessionDep
from src.domains.organizations.exceptions import InvalidApiKey
from src.domains.organizations.models import User
from src.domains.organizations.service import OrganizationService


async def current_user(request: Request, session: SessionDep) -> User:
    """The user behind `Authorization: Bearer <api key>`."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise InvalidApiKey("Send your API key as 'Authorization: Bearer <key>'.")
    return await OrganizationService(session).authenticate(key.strip())


CurrentUserDep = Annotated[User, Depends(current_user)]
