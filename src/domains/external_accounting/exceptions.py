"""Errors of connecting to, and syncing from, accounting providers."""

from __future__ import annotations

from src.core.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    LedgersyncError,
    NotFound,
    RateLimited,
    ValidationFailed,
)


class ConnectionNotFound(NotFound):
    code = "connection_not_found"


class ReauthorisationRequired(Conflict):
    """The provider no longer accepts our refresh token: a user must connect again."""

    code = "reauthorisation_required"


class InvalidState(BadRequest):
    code = "invalid_state"


class StateTampered(BadRequest):
    code = "state_tampered"


class StateExpired(BadRequest):
    code = "state_expired"


class StateAlreadyUsed(BadRequest):
    code = "state_already_used"


class StateMismatch(Forbidden):
    code = "state_mismatch"


class StateNotBound(Forbidden):
    """The callback did not come from the browser (or API key) that started the connect flow."""

    code = "state_not_bound"


class ConnectLinkNotFound(NotFound):
    """No connect link has this id (never issued, or purged after it expired)."""

    code = "connect_link_not_found"


class ConnectLinkUsed(BadRequest):
    code = "connect_link_used"


class TenantHeldByAnotherOrganization(Conflict):
    """Another organisation already holds an active connection to this Xero organisation."""

    code = "tenant_connected_elsewhere"


class FullSyncRequiresAdmin(Forbidden):
    code = "full_sync_requires_admin"


class SyncRateLimited(RateLimited):
    """The organisation started more syncs than its limit allows in the window."""

    code = "sync_rate_limited"
    status_code = 429

    def __init__(self, detail: str, *, retry_after_seconds: int) -> None:
        super().__init__(detail, retry_after_seconds=retry_after_seconds)
        self.headers = {"Retry-After": str(retry_after_seconds)}


class AuthorisationDenied(BadRequest):
    code = "authorization_denied"


class OAuthExchangeFailed(BadRequest):
    """The provider refused to exchange the code (wrong verifier, expired or reused code)."""

    code = "oauth_exchange_failed"


class ProviderUnavailable(LedgersyncError):
    """The provider did not answer usefully (network error, 5xx, malformed body)."""

    code = "provider_unavailable"
    status_code = 502


class TokenRefreshFailed(ProviderUnavailable):
    """Refreshing the token set failed for a temporary reason, after retries; the stored refresh
    token is kept (Xero accepts it again for 30 minutes after a refresh whose answer was lost),
    so the connection stays active and a later call tries again."""

    code = "token_refresh_failed"


class ProviderRejected(LedgersyncError):
    """The provider refused a request for a reason we cannot fix by retrying."""

    code = "provider_rejected"
    status_code = 502


class ProviderDataInvalid(LedgersyncError):
    """Xero answered with well-formed JSON whose records lack what Xero documents."""

    code = "provider_data_invalid"
    status_code = 502


class ProviderRateLimited(LedgersyncError):
    """The provider's daily limit is spent: waiting inside a request is not an option."""

    code = "rate_limited_daily"
    status_code = 429


class TenantAccessRevoked(Conflict):
    """Xero answers 403 for this tenant: the organisation was disconnected or access revoked."""

    code = "tenant_access_revoked"


class NoActiveConnection(Conflict):
    code = "no_active_connection"


class SyncInProgress(Conflict):
    """Another run holds the lease on (connection, object type); `sync_run_id` names it."""

    code = "sync_in_progress"


class SyncLeaseLost(Conflict):
    """The run no longer holds its lease (declared dead, or its connection was disconnected):
    it stopped without writing the page in hand."""

    code = "sync_lease_lost"


class SyncRunFinished(Conflict):
    """The run already ended (success, failed, paused for good, cancelled): nothing to cancel."""

    code = "sync_run_finished"


class RunNotClaimable(Conflict):
    """A job found its run ended, or run by another job: it has nothing to do (jobs are
    idempotent)."""

    code = "sync_run_not_claimable"


class InvalidSyncParameter(ValidationFailed):
    """A parameter the service refuses (an unknown type, a cursor it did not issue...)."""


class RecordNotFound(NotFound):
    code = "not_found"


class InvalidCursor(BadRequest):
    """A feed cursor this API did not issue (pass back `next_cursor` as it came)."""

    code = "invalid_cursor"


class SyncCrashed(LedgersyncError):
    """An unexpected error ended a sync; the run is recorded as failed before it propagates."""

    code = "internal_error"
    status_code = 500


class UnsupportedProvider(LedgersyncError):
    code = "unsupported_provider"
    status_code = 501


# Failures worth another try later: the provider down or slow, a token refresh that failed for a
# temporary reason (a subclass). Anything else (refused, revoked, bad data) would fail again.
TEMPORARY_FAILURES = (ProviderUnavailable,)
