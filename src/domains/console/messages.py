"""A sync run's error in plain words, with what to do about it: a person reads the console, not
the API's codes. Unknown codes fall back to the run's own sentence."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple


class PlainError(NamedTuple):
    """What went wrong and what to do, for a person."""

    what: str
    todo: str


PLAIN_ERRORS: dict[str, PlainError] = {
    "reauthorisation_required": PlainError(
        "Xero no longer accepts our access to this organisation.",
        "An admin should press Re-authorise and approve access in Xero again.",
    ),
    "token_refresh_failed": PlainError(
        "We could not renew our access to Xero.",
        "Try again in a few minutes; if it keeps failing, an admin should re-authorise.",
    ),
    "tenant_access_revoked": PlainError(
        "This Xero organisation was disconnected from ledgersync in Xero.",
        "An admin should connect it again (Connect Xero).",
    ),
    "rate_limited_daily": PlainError(
        "Xero's daily call limit for this organisation is nearly spent.",
        "Nothing to do: the sync resumes by itself when the limit allows.",
    ),
    "provider_rate_limited": PlainError(
        "Xero asked us to slow down.",
        "Nothing to do: the sync waits and carries on.",
    ),
    "provider_unavailable": PlainError(
        "Xero did not answer, or answered with an error on its side.",
        "Nothing to do for now: a background sync retries; otherwise press Sync now later.",
    ),
    "provider_rejected": PlainError(
        "Xero refused one of our requests.",
        "If it happens again, send the details below to support.",
    ),
    "provider_data_invalid": PlainError(
        "Xero sent data we could not read.",
        "Send the details below to support; the other records were stored.",
    ),
    "sync_lease_lost": PlainError(
        "Another sync of this connection took over.",
        "Nothing to do: the other sync carries on.",
    ),
    "abandoned": PlainError(
        "The worker running this sync stopped before it finished.",
        "Press Sync now: it resumes where this one stopped.",
    ),
    "connection_disconnected": PlainError(
        "The connection was disconnected while this sync ran.",
        "Connect Xero again to sync this organisation.",
    ),
    "cancelled": PlainError("The sync was cancelled.", "Press Sync now to run it again."),
}


def plain_error(
    code: str | None, detail: str | None, *, resumes_at: datetime | None = None
) -> PlainError | None:
    """The run's error for a person; None when the run has none. `resumes_at`: when a run
    stopped by Xero's daily limit carries on."""
    if code is None:
        return None
    known = PLAIN_ERRORS.get(code)
    if known is not None and code == "rate_limited_daily" and resumes_at is not None:
        when = resumes_at.strftime("%H:%M UTC on %d %b")
        return known._replace(todo=f"Nothing to do: the sync carries on by itself at {when}.")
    if known is not None:
        return known
    return PlainError(detail or "The sync stopped with an error.", "Press Sync now to try again.")
