"""The webhook route's dependency: the raw body, read by us (the signature is over its exact
bytes, so FastAPI must not parse it first), capped in size, and verified against Xero's key."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from src.core import metrics
from src.core.deps import SettingsDep
from src.domains.external_accounting.xero.webhooks.exceptions import WebhookPayloadTooLarge

SIGNATURE_HEADER = "x-xero-signature"


def signature_of(key: str, body: bytes) -> str:
    """What Xero sends in `x-xero-signature`: base64(HMAC-SHA256(key, body))."""
    digest = hmac.new(key.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


async def _capped_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) once it is known to exceed `limit`: by its Content-Length before
    reading, else while streaming, so a huge body is never held in memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        metrics.WEBHOOK_DELIVERIES_REJECTED.labels("too_large").inc()
        raise WebhookPayloadTooLarge(f"A webhook delivery may be at most {limit} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            metrics.WEBHOOK_DELIVERIES_REJECTED.labels("too_large").inc()
            raise WebhookPayloadTooLarge(f"A webhook delivery may be at most {limit} bytes.")
    return bytes(body)


async def xero_signed_body(
    request: Request,
    settings: SettingsDep,
    signature: Annotated[
        str | None,
        Header(
            alias=SIGNATURE_HEADER,
            description="base64(HMAC-SHA256(webhook key, raw body)), as Xero signs deliveries",
            examples=["qBi5cH0fyO3Zs3r3RpnuCxxIBXX+QK2F0vfxXWBnOgs="],
        ),
    ] = None,
) -> bytes | None:
    """The delivery's bytes when Xero's key signed them; None when the signature is missing or
    wrong, or no key is configured (webhooks off: nothing is accepted)."""
    body = await _capped_body(request, settings.webhook_max_body_bytes)
    key = settings.xero_webhook_key.get_secret_value()
    # Constant time, on bytes: how much of a guess matched must not show in the timing.
    if (
        not key
        or signature is None
        or not hmac.compare_digest(signature.strip().encode(), signature_of(key, body).encode())
    ):
        metrics.WEBHOOK_DELIVERIES_REJECTED.labels("signature").inc()
        return None
    return body


SignedBody = Annotated[bytes | None, Depends(xero_signed_body)]
