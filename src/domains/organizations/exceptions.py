"""Errors of the organisations domain."""

from __future__ import annotations

from src.core.errors import Forbidden, NotFound, Unauthenticated, ValidationFailed


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
