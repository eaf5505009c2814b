"""The small HTML pages a browser's connect flow ends on. Every value is escaped: tenant and
organisation names come from Xero and from customers."""

from __future__ import annotations

from html import escape

from fastapi.responses import HTMLResponse

from src.core.errors import LedgersyncError
from src.domains.external_accounting.xero.auth.connect_service import ConnectOutcome

# The callback's URL carries the code and state: no referrer may leak it, nothing may cache it.
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'",
    "X-Content-Type-Options": "nosniff",
}


def _page(title: str, body: str, status_code: int) -> HTMLResponse:
    html = (
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{escape(title)}</title>"
        f"<h1>{escape(title)}</h1>{body}</html>"
    )
    return HTMLResponse(html, status_code=status_code, headers=_HEADERS)


def connected_page(outcome: ConnectOutcome) -> HTMLResponse:
    """Which Xero organisations are now connected (and which were refused, and why)."""
    names = "".join(f"<li>{escape(c.tenant_name or c.tenant_id)}</li>" for c in outcome.connections)
    body = (
        f"<p>Connected to {escape(outcome.organization_name or 'your organisation')} in "
        f"ledgersync:</p><ul>{names}</ul>"
    )
    if outcome.refused:
        refused = "".join(
            f"<li>{escape(r.tenant_name or r.tenant_id)}: {escape(r.detail)}</li>"
            for r in outcome.refused
        )
        body += f"<p>Not connected:</p><ul>{refused}</ul>"
    body += (
        "<p>You can close this window, or go back to "
        '<a href="/console/connections">the ledgersync console</a>.</p>'
    )
    return _page("Xero connected", body, 200)


def failure_page(error: LedgersyncError) -> HTMLResponse:
    """Why nothing was connected, and what to do (the error's own sentence says it)."""
    body = (
        f"<p>{escape(error.detail)}</p>"
        f"<p>Error code: <code>{escape(error.code)}</code>. Nothing was connected; an admin of "
        "your organisation can create a new connect link.</p>"
    )
    return _page("Xero was not connected", body, error.status_code)
