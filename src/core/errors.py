"""The typed error hierarchy. Services raise these; one handler renders them as
`{"error": code, "detail": sentence}` with the status code each class carries."""

from __future__ import annotations

from typing import Any, ClassVar


class LedgersyncError(Exception):
    """Base of every error the API reports to a caller on purpose."""

    code: ClassVar[str] = "internal_error"
    status_code: ClassVar[int] = 500

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def to_body(self) -> dict[str, Any]:
        """The JSON body sent to the caller."""
        return {"error": self.code, "detail": self.detail, **self.extra}


class BadRequest(LedgersyncError):
    code = "bad_request"
    status_code = 400


class ValidationFailed(LedgersyncError):
    """A parameter is missing, malformed or out of range.

    One code for every refused parameter, whether FastAPI's validation or a service refused it."""

    code = "invalid_parameter"
    status_code = 422


class Unauthenticated(LedgersyncError):
    """Send your API key as 'Authorization: Bearer <key>'."""

    code = "unauthenticated"
    status_code = 401


class Forbidden(LedgersyncError):
    code = "forbidden"
    status_code = 403


class NotFound(LedgersyncError):
    """No such resource."""

    code = "not_found"
    status_code = 404


class Conflict(LedgersyncError):
    code = "conflict"
    status_code = 409


class ServiceUnavailable(LedgersyncError):
    code = "service_unavailable"
    status_code = 503


class MethodNotAllowed(LedgersyncError):
    """The path exists, but not for this method."""

    code = "method_not_allowed"
    status_code = 405


class RateLimited(LedgersyncError):
    """Too many requests; try again after `retry_after_seconds`."""

    code = "rate_limited"
    status_code = 429
