"""Control API for webhooks (`/_sandbox/webhooks`): the subscription, its faults, the delivery
log and counters, and Xero's intent-to-receive check; and the events the control API's
changes produce."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from src.xero_sandbox.control import runtime_of
from src.xero_sandbox.guard import PREFIX
from src.xero_sandbox.records import CreditNoteRecord, InvoiceRecord
from src.xero_sandbox.responses import JsonResponse
from src.xero_sandbox.webhook_settings import WebhookUpdate
from src.xero_sandbox.webhooks import Event

router = APIRouter(tags=["sandbox webhooks"])


def resource_url(request: Request, collection: str, resource_id: str) -> str:
    """Where the accounting API serves the resource, at the address this request came to."""
    return f"{str(request.base_url).rstrip('/')}{PREFIX}/{collection}/{resource_id}"


def emit_invoice_change(
    request: Request, tenant_id: str, record: InvoiceRecord, *, created: bool = False
) -> None:
    """The INVOICE CREATE/UPDATE event of a change the control API just made."""
    runtime_of(request).webhooks.emit(
        Event(
            category="INVOICE",
            event_type="CREATE" if created else "UPDATE",
            tenant_id=tenant_id,
            resource_id=record.invoice_id,
            resource_url=resource_url(request, "Invoices", record.invoice_id),
            at_ms=record.updated_ms,
        )
    )


def emit_credit_note_created(request: Request, tenant_id: str, note: CreditNoteRecord) -> None:
    """The CREDITNOTE CREATE event of a new credit note (Xero adds its Type and Status)."""
    runtime_of(request).webhooks.emit(
        Event(
            category="CREDITNOTE",
            event_type="CREATE",
            tenant_id=tenant_id,
            resource_id=note.credit_note_id,
            resource_url=resource_url(request, "CreditNotes", note.credit_note_id),
            at_ms=note.updated_ms,
            data={"Type": note.type, "Status": note.status},
        )
    )


@router.get("/webhooks")
async def get_webhooks(request: Request, log: int = Query(50, ge=0, le=500)) -> Response:
    """The subscription (never its key), faults, counters and the last `log` deliveries."""
    return JsonResponse(runtime_of(request).webhooks.state(log))


@router.put("/webhooks")
async def put_webhooks(request: Request, body: WebhookUpdate) -> Response:
    """Change the subscription or its faults (fields left out keep their value); answers the
    state now in force."""
    webhooks = runtime_of(request).webhooks
    webhooks.configure(body)
    return JsonResponse(webhooks.state(50))


@router.post("/webhooks/intent-to-receive")
async def intent_to_receive(request: Request) -> Response:
    """Run Xero's check against the subscribed URL: a correctly signed empty batch must get 200
    with an empty body, a wrongly signed one 401. Answers whether it passed and what came back."""
    webhooks = runtime_of(request).webhooks
    if webhooks.settings.url is None or webhooks.settings.key is None:
        return JsonResponse(
            {
                "error": "webhook_not_configured",
                "detail": "Set the webhook's url and key first (PUT /_sandbox/webhooks)",
            },
            status_code=409,
        )
    return JsonResponse(await webhooks.intent_to_receive())
