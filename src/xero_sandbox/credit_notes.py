"""Credit notes: made through the control API (allocated in full to one invoice), served by the
accounting API at `/CreditNotes` so a CREDITNOTE event's resourceUrl answers like Xero's."""

from __future__ import annotations

import math
from decimal import Decimal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from src.xero_sandbox.accounting import _csv, _int_param, _modified_since
from src.xero_sandbox.control import runtime_of
from src.xero_sandbox.render import render_credit_note
from src.xero_sandbox.responses import JsonResponse, envelope, problem, validation_exception
from src.xero_sandbox.store import SandboxDataError, TenantData
from src.xero_sandbox.webhook_control import emit_credit_note_created
from src.xero_sandbox.where import WhereError

control_router = APIRouter(tags=["sandbox data"])
accounting_router = APIRouter()

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class NewCreditNote(BaseModel):
    invoice_id: str = Field(max_length=100)
    amount: Decimal = Field(gt=0, allow_inf_nan=False, description="send as a string")


def _error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status_code=status)


@control_router.post("/tenants/{tenant_id}/credit-notes", status_code=201)
async def create_credit_note(request: Request, tenant_id: str, body: NewCreditNote) -> Response:
    """A credit note (ACCRECCREDIT for a sales invoice, ACCPAYCREDIT for a bill) allocated in
    full to the invoice; emits one CREDITNOTE CREATE event and no INVOICE event."""
    tenant = runtime_of(request).store.tenants.get(tenant_id.lower())
    if tenant is None:
        return _error(404, "unknown_tenant", f"No tenant {tenant_id}")
    if tenant.index_of(body.invoice_id) is None:
        return _error(404, "unknown_invoice", f"No invoice {body.invoice_id} in tenant {tenant_id}")
    try:
        note = tenant.create_credit_note(body.invoice_id, body.amount)
    except SandboxDataError as error:
        return _error(400, "invalid_mutation", str(error))
    emit_credit_note_created(request, tenant.tenant_id, note)
    return JsonResponse(render_credit_note(note), status_code=201)


@control_router.get("/tenants/{tenant_id}/credit-notes")
async def ground_truth_credit_notes(request: Request, tenant_id: str) -> Response:
    """Every credit note made through the control API, in creation order."""
    tenant = runtime_of(request).store.tenants.get(tenant_id.lower())
    if tenant is None:
        return _error(404, "unknown_tenant", f"No tenant {tenant_id}")
    return JsonResponse(
        {"CreditNotes": [render_credit_note(n) for n in tenant.credit_notes.values()]}
    )


@accounting_router.get("/CreditNotes")
async def get_credit_notes(request: Request) -> Response:
    """Credit notes, filtered by `IDs` and `If-Modified-Since`, paged like Xero's (100 a page
    by default) when `page` is given."""
    tenant: TenantData = request.state.tenant
    params = request.query_params
    try:
        for unsupported in ("where", "order"):
            if params.get(unsupported):
                raise WhereError(f"The sandbox does not support {unsupported} on CreditNotes")
        page = _int_param(request, "page", None)
        page_size = _int_param(request, "pageSize", DEFAULT_PAGE_SIZE) or DEFAULT_PAGE_SIZE
        page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        modified_since = _modified_since(request)
    except WhereError as error:
        return validation_exception(str(error))
    notes = list(tenant.credit_notes.values())
    ids = {i.lower() for i in _csv(params.get("IDs"))}
    if ids:
        notes = [n for n in notes if n.credit_note_id in ids]
    if modified_since is not None:
        notes = [n for n in notes if n.updated_ms >= modified_since]
    if page is None:
        return JsonResponse(envelope("CreditNotes", [render_credit_note(n) for n in notes]))
    page = max(page, 1)
    chunk = notes[(page - 1) * page_size : page * page_size]
    pagination = {
        "page": page,
        "pageSize": page_size,
        "pageCount": math.ceil(len(notes) / page_size),
        "itemCount": len(notes),
    }
    return JsonResponse(envelope("CreditNotes", [render_credit_note(n) for n in chunk], pagination))


@accounting_router.get("/CreditNotes/{credit_note_ref}")
async def get_credit_note(request: Request, credit_note_ref: str) -> Response:
    """One credit note by CreditNoteID (or CreditNoteNumber)."""
    tenant: TenantData = request.state.tenant
    ref = credit_note_ref.lower()
    for note in tenant.credit_notes.values():
        if note.credit_note_id == ref or note.number.lower() == ref:
            return JsonResponse(envelope("CreditNotes", [render_credit_note(note)]))
    return problem(404, "NotFound", "The resource you're looking for cannot be found")
