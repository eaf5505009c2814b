"""Errors of the organisations domain."""

from __future__ import annotations

from src.core.errors import Conflict, Forbidden, NotFound, Unauthenticated, ValidationFailed


class InvalidApiKey(Unauthenticated):
    code = "unauthenticated"


class OrganizationNotFound(NotFound):
    code = "organization_not_found"


class NotAMember(Forbidden):
    code = "not_a_member"


class InsufficientRole(Forbidden):
    code = "insufficient_role"


class UserNotFound(NotFound):
    code = "user_not_found"


class InvalidRole(ValidationFailed):
    code = "invalid_role"


class AlreadyAMember(Conflict):
    code = "already_a_member"


class UserNotAMember(NotFound):
    """An operator named a user who is not in that organisation (the CLI's error)."""

    code = "user_not_a_member"


class InvalidExpiry(ValidationFailed):
    code = "invalid_expiry"
