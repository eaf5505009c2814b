"""Xero's webhook receiver: no API key (the signature is the authentication). 401 with an empty
body when the signature is missing or wrong, 200 with an empty body when it is right (which
also answers Xero's intent-to-receive check); the events are stored and queued, never synced
here, so the answer comes well within Xero's 5 seconds."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from src.core.deps import SessionDep, SettingsDep
from src.core.openapi import error_responses
from src.domains.external_accounting.deps import JobAppDep
from src.domains.external_accounting.xero.webhooks.deps import SignedBody
from src.domains.external_accounting.xero.webhooks.exceptions import (
    JobQueueUnavailable,
    WebhookPayloadInvalid,
    WebhookPayloadTooLarge,
)
from src.domains.external_accounting.xero.webhooks.schemas import DELIVERY_EXAMPLE, DELIVERY_SCHEMA
from src.domains.external_accounting.xero.webhooks.service import WebhookReceiver, parse_delivery

router = APIRouter(tags=["webhooks"])

WEBHOOK_RESPONSES = {
    200: {"description": "Signed by Xero's key: the events are accepted (an empty body)"},
    401: {
        "description": "The signature is missing or wrong, or no XERO_WEBHOOK_KEY is set "
        "(an empty body, as Xero requires)"
    },
    **error_responses(WebhookPayloadInvalid, WebhookPayloadTooLarge, JobQueueUnavailable),
}


@router.post(
    "/xero/webhooks",
    response_class=Response,
    responses=WEBHOOK_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": DELIVERY_SCHEMA, "example": DELIVERY_EXAMPLE}
            },
        }
    },
)
async def receive_xero_webhook(
    body: SignedBody, session: SessionDep, settings: SettingsDep, job_app: JobAppDep
) -> Response:
    """Receive a delivery of Xero webhook events, signed with `XERO_WEBHOOK_KEY`."""
    if body is None:
        return Response(status_code=401)
    await WebhookReceiver(session, settings).receive(parse_delivery(body), job_app)
    return Response(status_code=200)
