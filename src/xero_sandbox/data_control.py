"""Control API for the data: the ground truth, and the edits a Xero user makes to invoices (each
emits the INVOICE event Xero would)."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from src.xero_sandbox.control import runtime_of
from src.xero_sandbox.records import InvoiceRecord
from src.xero_sandbox.render import render_account, render_invoice
from src.xero_sandbox.responses import JsonResponse
from src.xero_sandbox.store import ExactAmounts, SandboxDataError, TenantData
from src.xero_sandbox.webhook_control import emit_invoice_change

router = APIRouter(tags=["sandbox data"])


class NewLine(BaseModel):
    """Exact figures for one line (send them as strings to keep every digit)."""

    quantity: Decimal = Field(allow_inf_nan=False)
    unit_amount: Decimal = Field(allow_inf_nan=False)
    tax_amount: Decimal = Field(default=Decimal(0), allow_inf_nan=False)


class NewInvoice(BaseModel):
    type: Literal["ACCREC", "ACCPAY"] = "ACCREC"
    status: Literal["DRAFT", "SUBMITTED", "AUTHORISED"] = "DRAFT"
    date: str | None = Field(default=None, description="ISO date, default today")
    lines: int = Field(default=2, ge=1, le=10)
    seed: int | None = None
    line_items: list[NewLine] | None = Field(
        default=None, min_length=1, max_length=10, description="exact figures, one per line"
    )
    currency_rate: Decimal | None = Field(default=None, gt=0, allow_inf_nan=False)


class InvoiceEdit(BaseModel):
    reference: str | None = Field(default=None, max_length=255)
    date: str | None = None
    add_line: bool = False
    remove_line: bool = False


class Payment(BaseModel):
    amount: Decimal | None = Field(default=None, gt=0, description="default: the amount due")


class BulkTouch(BaseModel):
    count: int = Field(ge=1, le=1_000_000)
    seed: int = 0


def _error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status_code=status)


def _tenant(request: Request, tenant_id: str) -> TenantData | None:
    return runtime_of(request).store.tenants.get(tenant_id.lower())


def _answer(tenant: TenantData, record: InvoiceRecord) -> JsonResponse:
    return JsonResponse(render_invoice(record, line_items=True))


@router.get("/tenants/{tenant_id}/invoices")
async def ground_truth_invoices(
    request: Request,
    tenant_id: str,
    offset: int = Query(0, ge=0),
    limit: int = Query(1000, ge=1, le=10_000),
) -> Response:
    """Every invoice of the tenant exactly as stored, with line items, in index order."""
    tenant = _tenant(request, tenant_id)
    if tenant is None:
        return _error(404, "unknown_tenant", f"No tenant {tenant_id}")
    end = min(offset + limit, tenant.invoice_count)
    invoices = [render_invoice(tenant.invoice(i), line_items=True) for i in range(offset, end)]
    return JsonResponse({"total": tenant.invoice_count, "offset": offset, "Invoices": invoices})


@router.get("/tenants/{tenant_id}/accounts")
async def ground_truth_accounts(request: Request, tenant_id: str) -> Response:
    """Every account of the tenant."""
    tenant = _tenant(request, tenant_id)
    if tenant is None:
        return _error(404, "unknown_tenant", f"No tenant {tenant_id}")
    return JsonResponse({"Accounts": [render_account(a) for a in tenant.accounts]})


@router.post("/tenants/{tenant_id}/invoices", status_code=201)
async def create_invoice(request: Request, tenant_id: str, body: NewInvoice) -> Response:
    """Create an invoice (returns it with its InvoiceID)."""
    tenant = _tenant(request, tenant_id)
    if tenant is None:
        return _error(404, "unknown_tenant", f"No tenant {tenant_id}")
    try:
        record = tenant.create_invoice(
            type_name=body.type,
            status=body.status,
            date_text=body.date,
            lines=body.lines,
            seed=body.seed,
            amounts=[ExactAmounts(**line.model_dump()) for line in body.line_items or ()],
            currency_rate=body.currency_rate,
        )
    except (SandboxDataError, ValueError) as error:
        return _error(400, "invalid_mutation", str(error))
    emit_invoice_change(request, tenant.tenant_id, record, created=True)
    response = _answer(tenant, record)
    response.status_code = 201
    return response


@router.post("/tenants/{tenant_id}/invoices/touch")
async def touch_invoices(request: Request, tenant_id: str, body: BulkTouch) -> Response:
    """Edit the reference of `count` distinct invoices chosen from `seed` (bumps UpdatedDateUTC):
    the "1% of invoices changed" step of a benchmark."""
    tenant = _tenant(request, tenant_id)
    if tenant is None:
        return _error(404, "unknown_tenant", f"No tenant {tenant_id}")
    count = min(body.count, tenant.invoice_count)
    chosen = random.Random(body.seed).sample(range(tenant.invoice_count), count)
    touched = 0
    for index in chosen:
        record = tenant.invoice(index)
        record.reference = f"{record.reference} (edited)".strip()[:255]
        tenant.touch(record)
        emit_invoice_change(request, tenant.tenant_id, record)
        touched += 1
    return JsonResponse({"touched": touched})


@router.post("/tenants/{tenant_id}/invoices/{invoice_id}/{action}")
async def mutate_invoice(
    request: Request,
    tenant_id: str,
    invoice_id: str,
    action: Literal["edit", "submit", "authorise", "pay", "void", "delete"],
) -> Response:
    """Edit, submit, authorise, pay (`{"amount": ...}`, default in full), void or delete."""
    tenant = _tenant(request, tenant_id)
    if tenant is None:
        return _error(404, "unknown_tenant", f"No tenant {tenant_id}")
    if tenant.index_of(invoice_id) is None:
        return _error(404, "unknown_invoice", f"No invoice {invoice_id} in tenant {tenant_id}")
    raw = await request.body()
    try:
        if action == "edit":
            edit = InvoiceEdit.model_validate_json(raw or b"{}")
            record = tenant.edit_invoice(
                invoice_id,
                reference=edit.reference,
                date_text=edit.date,
                add_line=edit.add_line,
                remove_line=edit.remove_line,
            )
        elif action == "pay":
            payment = Payment.model_validate_json(raw or b"{}")
            record = tenant.pay(invoice_id, payment.amount)
        else:
            status = {
                "submit": "SUBMITTED",
                "authorise": "AUTHORISED",
                "void": "VOIDED",
                "delete": "DELETED",
            }[action]
            record = tenant.set_status(invoice_id, status)
    except (SandboxDataError, ValueError) as error:
        return _error(400, "invalid_mutation", str(error).splitlines()[0])
    emit_invoice_change(request, tenant.tenant_id, record)
    return _answer(tenant, record)
