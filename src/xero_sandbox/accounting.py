"""The accounting API (`/api.xro/2.0`): Invoices and Accounts, as Xero serves them.

The guard in `guard.py` has already authenticated the call and put the tenant on
`request.state.tenant` by the time these handlers run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from src.xero_sandbox.records import STATUS_CODE, STATUSES, TYPES, invoice_id, invoice_number
from src.xero_sandbox.render import render_account, render_invoice
from src.xero_sandbox.responses import JsonResponse, envelope, problem, validation_exception
from src.xero_sandbox.store import InvoiceQuery, TenantData
from src.xero_sandbox.where import WhereError, compile_where, parse_where
from src.xero_sandbox.xero_dates import date_to_day, datetime_to_ms, parse_http_or_iso_datetime

router = APIRouter()

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def _day_of(value: Any) -> int:
    if isinstance(value, datetime):
        return date_to_day(value.date())
    if isinstance(value, date):
        return date_to_day(value)
    raise ValueError("a DateTime(...) is needed")


def _ms_of(value: Any) -> int:
    if isinstance(value, datetime):
        return datetime_to_ms(value)
    if isinstance(value, date):
        return date_to_day(value) * 86_400_000
    raise ValueError("a DateTime(...) is needed")


def _invoice_fields(
    tenant: TenantData,
) -> dict[str, tuple[Callable[[int], Any], Callable[[Any], Any]]]:
    columns, profile = tenant.columns, tenant.profile
    return {
        "Type": (lambda i: TYPES[columns.type_code[i]], str),
        "Status": (lambda i: STATUSES[columns.status_code[i]], str),
        "Date": (lambda i: columns.date_day[i], _day_of),
        "UpdatedDateUTC": (lambda i: columns.updated_ms[i], _ms_of),
        "Contact.ContactID": (lambda i: profile.contacts[columns.contact[i]][0], str),
        "InvoiceNumber": (lambda i: invoice_number(TYPES[columns.type_code[i]], i), str),
        "InvoiceID": (lambda i: invoice_id(profile, i), lambda v: str(v).lower()),
    }


def _invoice_sort(tenant: TenantData, order: str) -> tuple[Callable[[int], Any] | None, bool]:
    parts = order.strip().split()
    if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1].upper() not in ("ASC", "DESC")):
        raise WhereError(f"Cannot order by {order!r}")
    columns = tenant.columns
    keys: dict[str, Callable[[int], Any]] = {
        "updateddateutc": lambda i: columns.updated_ms[i],
        "date": lambda i: columns.date_day[i],
        "invoicenumber": lambda i: invoice_number(TYPES[columns.type_code[i]], i),
        "invoiceid": lambda i: invoice_id(tenant.profile, i),
        "type": lambda i: columns.type_code[i],
        "status": lambda i: STATUSES[columns.status_code[i]],
    }
    key = keys.get(parts[0].lower())
    if key is None:
        raise WhereError(f"Cannot order by {parts[0]!r}: not a supported field")
    return key, len(parts) == 2 and parts[1].upper() == "DESC"


def _csv(value: str | None) -> list[str]:
    return [part.strip().strip('"') for part in value.split(",") if part.strip()] if value else []


def _modified_since(request: Request) -> int | None:
    header = request.headers.get("if-modified-since")
    if not header:
        return None
    try:
        # Xero compares at one-second resolution: a record updated within the given second counts.
        return datetime_to_ms(parse_http_or_iso_datetime(header)) // 1000 * 1000
    except (TypeError, ValueError) as error:
        raise WhereError(f"If-Modified-Since {header!r} is not a valid date") from error


def _int_param(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as error:
        raise WhereError(f"{name} must be a whole number") from error


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() == "true"


@router.get("/Invoices")
async def get_invoices(request: Request) -> Response:
    """Invoices matching the filters; line items only when `page` is given (as Xero does)."""
    tenant: TenantData = request.state.tenant
    params = request.query_params
    try:
        page = _int_param(request, "page", None)
        page_size = _int_param(request, "pageSize", DEFAULT_PAGE_SIZE) or DEFAULT_PAGE_SIZE
        page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        if page is not None and page < 1:
            page = 1
        predicates: list[Callable[[int], bool]] = []
        where = params.get("where")
        if where:
            predicates.append(compile_where(parse_where(where), _invoice_fields(tenant)))
        statuses = _csv(params.get("Statuses"))
        if statuses:
            unknown = [s for s in statuses if s not in STATUS_CODE]
            if unknown:
                raise WhereError(f"Unknown status {unknown[0]!r} in Statuses")
            codes = {STATUS_CODE[s] for s in statuses}
            predicates.append(lambda i: tenant.columns.status_code[i] in codes)
        ids = _csv(params.get("IDs"))
        if ids:
            wanted = {tenant.index_of(i) for i in ids} - {None}
            predicates.append(lambda i: i in wanted)
        numbers = set(_csv(params.get("InvoiceNumbers")))
        if numbers:
            fields = _invoice_fields(tenant)
            predicates.append(lambda i: fields["InvoiceNumber"][0](i) in numbers)
        contacts = {c.lower() for c in _csv(params.get("ContactIDs"))}
        if contacts:
            profile, columns = tenant.profile, tenant.columns
            predicates.append(lambda i: profile.contacts[columns.contact[i]][0] in contacts)
        order = params.get("order")
        sort_key, descending = _invoice_sort(tenant, order) if order else (None, False)
        modified_since = _modified_since(request)
    except WhereError as error:
        return validation_exception(str(error))

    predicate = (lambda i: all(p(i) for p in predicates)) if predicates else None
    query = InvoiceQuery(
        predicate_key="|".join(
            f"{name}={params.get(name, '')}"
            for name in ("where", "Statuses", "IDs", "InvoiceNumbers", "ContactIDs")
        ),
        order_key=order or "",
        modified_since_ms=modified_since,
    )
    indices = tenant.query(query, predicate, sort_key, descending)
    summary = _flag(request, "summaryOnly")
    if page is None:
        invoices = [
            render_invoice(tenant.invoice(i), line_items=False, summary=summary) for i in indices
        ]
        return JsonResponse(envelope("Invoices", invoices))
    start = (page - 1) * page_size
    invoices = [
        render_invoice(tenant.invoice(i), line_items=not summary, summary=summary)
        for i in indices[start : start + page_size]
    ]
    pagination = {
        "page": page,
        "pageSize": page_size,
        "pageCount": math.ceil(len(indices) / page_size),
        "itemCount": len(indices),
    }
    return JsonResponse(envelope("Invoices", invoices, pagination))


@router.get("/Invoices/{invoice_ref}")
async def get_invoice(request: Request, invoice_ref: str) -> Response:
    """One invoice by InvoiceID (or InvoiceNumber), with its line items."""
    tenant: TenantData = request.state.tenant
    index = tenant.index_of(invoice_ref)
    if index is None:
        fields = _invoice_fields(tenant)
        number = fields["InvoiceNumber"][0]
        index = next((i for i in range(tenant.invoice_count) if number(i) == invoice_ref), None)
    if index is None:
        return problem(404, "NotFound", "The resource you're looking for cannot be found")
    return JsonResponse(
        envelope("Invoices", [render_invoice(tenant.invoice(index), line_items=True)])
    )


def _account_field(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda account: account.get(key)


_ACCOUNT_FIELDS: dict[str, tuple[Callable[[dict[str, Any]], Any], Callable[[Any], Any]]] = {
    name: (_account_field(name), str)
    for name in (
        "Type",
        "Class",
        "Status",
        "Code",
        "Name",
        "BankAccountType",
        "TaxType",
        "SystemAccount",
        "ReportingCode",
        "AccountID",
        "CurrencyCode",
    )
}
_ACCOUNT_FIELDS["EnablePaymentsToAccount"] = (lambda a: a.get("EnablePaymentsToAccount"), bool)


@router.get("/Accounts")
async def get_accounts(request: Request) -> Response:
    """The chart of accounts (not paginated), filtered by `where` and `If-Modified-Since`."""
    tenant: TenantData = request.state.tenant
    try:
        accounts = tenant.accounts_modified_since(_modified_since(request))
        where = request.query_params.get("where")
        if where:
            predicate = compile_where(parse_where(where), _ACCOUNT_FIELDS)
            accounts = [a for a in accounts if predicate(a)]
        order = request.query_params.get("order")
        if order:
            parts = order.split()
            field = parts[0]
            if field not in _ACCOUNT_FIELDS and field != "UpdatedDateUTC":
                raise WhereError(f"Cannot order by {field!r}")
            descending = len(parts) > 1 and parts[1].upper() == "DESC"
            accounts = sorted(accounts, key=lambda a: str(a.get(field, "")), reverse=descending)
    except WhereError as error:
        return validation_exception(str(error))
    return JsonResponse(envelope("Accounts", [render_account(a) for a in accounts]))


@router.get("/Accounts/{account_id}")
async def get_account(request: Request, account_id: str) -> Response:
    """One account by AccountID."""
    tenant: TenantData = request.state.tenant
    for account in tenant.accounts:
        if account["AccountID"] == account_id.lower():
            return JsonResponse(envelope("Accounts", [render_account(account)]))
    return problem(404, "NotFound", "The resource you're looking for cannot be found")


CURRENCY_NAMES = {
    "NZD": "New Zealand Dollar",
    "AUD": "Australian Dollar",
    "GBP": "British Pound",
    "USD": "United States Dollar",
    "EUR": "Euro",
    "CAD": "Canadian Dollar",
    "JPY": "Japanese Yen",
}


@router.get("/Currencies")
async def get_currencies(request: Request) -> Response:
    """The currencies the organisation uses: its base currency and those its invoices are in."""
    tenant: TenantData = request.state.tenant
    codes = [tenant.profile.base_currency] + sorted(
        set(CURRENCY_NAMES) - {tenant.profile.base_currency}
    )
    return JsonResponse(
        envelope("Currencies", [{"Code": c, "Description": CURRENCY_NAMES[c]} for c in codes])
    )
