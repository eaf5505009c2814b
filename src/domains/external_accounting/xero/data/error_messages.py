"""What of Xero's error bodies may be shown: only Xero's own message and code, bounded."""

from __future__ import annotations

import httpx

# Xero's error bodies reach every member of the organisation (a run's `error_detail`) and our
# logs: only Xero's own message and code go there, bounded, never the body itself.
MAX_XERO_MESSAGE_CHARS = 300


def xero_message(response: httpx.Response) -> str:
    """`HTTP 400, ValidationException 10: <Xero's messages>` from an error response."""
    summary = f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        return summary
    if not isinstance(body, dict):
        return summary
    code = " ".join(
        clean(str(part), 60)
        for part in (body.get("Type") or body.get("Title"), body.get("ErrorNumber"))
        if isinstance(part, str | int) and not isinstance(part, bool)
    )
    if code:
        summary += f", {code}"
    elements = body.get("Elements")
    messages = [
        error.get("Message")
        for element in (elements if isinstance(elements, list) else [])
        if isinstance(element, dict) and isinstance(element.get("ValidationErrors"), list)
        for error in element["ValidationErrors"]
        if isinstance(error, dict)
    ]
    texts = [m for m in messages if isinstance(m, str) and m.strip()]
    if not texts:
        texts = [t for t in (body.get("Message"), body.get("Detail")) if isinstance(t, str)][:1]
    message = clean("; ".join(texts), MAX_XERO_MESSAGE_CHARS)
    return f"{summary}: {message}" if message else summary


def clean(text: str, limit: int) -> str:
    """One line of at most `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
