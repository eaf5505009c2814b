"""Sync endpoints and reads of what was synced (thin: parse, authorise, call the service)."""

from __future__ import annotations

import base64
import uuid
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from src.core.deps import SessionDep, SettingsDep
from src.domains.external_accounting.base.sync import SyncResult
from src.domains.external_accounting.exceptions import InvalidSyncParameter
from src.domains.external_accounting.factory import IntegrationFactory
from src.domains.external_accounting.ledger_schemas import (
    AccountOut,
    InvoiceDetail,
    InvoiceOut,
    InvoicePage,
    LineItemOut,
    SyncRunOut,
)
from src.domains.external_accounting.service import ExternalAccountingService
from src.domains.external_accounting.sync_policy import invoice_sync_allowed, sync_allowed
from src.domains.organizations.deps import CurrentUserDep
from src.domains.organizations.models import Role
from src.domains.organizations.service import OrganizationService

router = APIRouter(tags=["sync"])

INVOICE_TYPES = {"ACCREC", "ACCPAY"}
ACCOUNT_TYPES = {
    "BANK",
    "CURRENT",
    "CURRLIAB",
    "DEPRECIATN",
    "DIRECTCOSTS",
    "EQUITY",
    "EXPENSE",
    "FIXED",
    "INVENTORY",
    "LIABILITY",
    "NONCURRENT",
    "OTHERINCOME",
    "OVERHEADS",
    "PREPAYMENT",
    "REVENUE",
    "SALES",
    "TERMLIAB",
    "PAYG",
    "PAYGLIABILITY",
    "SUPERANNUATIONEXPENSE",
    "SUPERANNUATIONLIABILITY",
    "WAGESEXPENSE",
}

OrgId = Annotated[uuid.UUID, Query(description="The customer organisation")]


def get_factory(request: Request) -> IntegrationFactory:
    """Provider services built on the process's shared client, token manager and throttle."""
    state = request.app.state
    return IntegrationFactory(
        state.settings,
        state.session_factory,
        state.http_client,
        state.xero_auth_manager,
        state.xero_throttle,
    )


FactoryDep = Annotated[IntegrationFactory, Depends(get_factory)]


def _listed(request: Request, name: str, allowed: set[str], error: str) -> list[str]:
    """A list parameter given as `name[]=A&name[]=B`, `name=A&name=B` or `name=A,B`."""
    raw = request.query_params.getlist(f"{name}[]") + request.query_params.getlist(name)
    values = [part.strip().upper() for item in raw for part in item.split(",") if part.strip()]
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise InvalidSyncParameter(
            f"Unknown {name} {', '.join(unknown)}; expected one of {', '.join(sorted(allowed))}.",
            parameter=name,
        )
    return sorted(set(values))


@router.post("/invoices/sync", dependencies=[Depends(invoice_sync_allowed)])
async def sync_invoices(
    request: Request,
    user: CurrentUserDep,
    org_id: OrgId,
    session: SessionDep,
    settings: SettingsDep,
    factory: FactoryDep,
    incremental: bool = True,
    months_back: Annotated[int, Query(ge=1, le=120)] = 12,
    connection_id: uuid.UUID | None = None,
    tenant_id: Annotated[str | None, Query(max_length=64)] = None,
) -> SyncResult:
    """Sync invoices from the organisation's accounting connections; returns a summary only."""
    types = _listed(request, "invoice_types", INVOICE_TYPES, "invalid_invoice_type")
    await OrganizationService(session).require_role(user, org_id, Role.MEMBER)
    service = ExternalAccountingService(session, settings)
    connections = await service.connections_to_sync(org_id, connection_id, tenant_id)
    return await service.sync_invoices(
        factory,
        connections,
        incremental=incremental,
        invoice_types=types or sorted(INVOICE_TYPES),
        months_back=months_back,
    )


@router.post("/accounts/sync", dependencies=[Depends(sync_allowed)])
async def sync_accounts(
    request: Request,
    user: CurrentUserDep,
    org_id: OrgId,
    session: SessionDep,
    settings: SettingsDep,
    factory: FactoryDep,
    connection_id: uuid.UUID | None = None,
    tenant_id: Annotated[str | None, Query(max_length=64)] = None,
) -> SyncResult:
    """Sync the chart of accounts (optionally only some account types); returns a summary only."""
    types = _listed(request, "account_types", ACCOUNT_TYPES, "invalid_account_type")
    await OrganizationService(session).require_role(user, org_id, Role.MEMBER)
    service = ExternalAccountingService(session, settings)
    connections = await service.connections_to_sync(org_id, connection_id, tenant_id)
    return await service.sync_accounts(factory, connections, account_types=types or None)


def _decode_cursor(cursor: str) -> tuple[date | None, uuid.UUID]:
    try:
        day, _, ident = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return (date.fromisoformat(day) if day else None), uuid.UUID(ident)
    except ValueError:
        raise InvalidSyncParameter(
            "The cursor is not one this API issued.", parameter="cursor"
        ) from None


def _encode_cursor(invoice: InvoiceOut) -> str:
    text = f"{invoice.date.isoformat() if invoice.date else ''}|{invoice.id}"
    return base64.urlsafe_b64encode(text.encode()).decode()


@router.get("/invoices")
async def list_invoices(
    request: Request,
    user: CurrentUserDep,
    org_id: OrgId,
    session: SessionDep,
    settings: SettingsDep,
    connection_id: uuid.UUID | None = None,
    contact_id: Annotated[str | None, Query(max_length=64)] = None,
    date_from: date | None = None,
    date_to: date | None = None,
    updated_since: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> InvoicePage:
    """Synced invoices, newest first; filter by type, status, contact, dates; keyset paging."""
    types = _listed(request, "type", INVOICE_TYPES, "invalid_invoice_type")
    statuses = _listed(
        request, "status", {"DRAFT", "SUBMITTED", "AUTHORISED", "PAID", "VOIDED", "DELETED"}, ""
    )
    await OrganizationService(session).require_role(user, org_id, Role.MEMBER)
    if updated_since is not None and updated_since.tzinfo is None:
        raise InvalidSyncParameter("updated_since needs a timezone, e.g. 2025-07-22T14:30:00Z.")
    invoices = await ExternalAccountingService(session, settings).list_invoices(
        org_id,
        connection_id=connection_id,
        types=types,
        statuses=statuses,
        contact_id=contact_id,
        date_from=date_from,
        date_to=date_to,
        updated_since=updated_since,
        after=_decode_cursor(cursor) if cursor else None,
        limit=limit,
    )
    items = [InvoiceOut.model_validate(i) for i in invoices]
    next_cursor = _encode_cursor(items[-1]) if len(items) == limit else None
    return InvoicePage(items=items, next_cursor=next_cursor)


@router.get("/invoices/{invoice_id}")
async def get_invoice(
    invoice_id: uuid.UUID,
    user: CurrentUserDep,
    org_id: OrgId,
    session: SessionDep,
    settings: SettingsDep,
) -> InvoiceDetail:
    """One synced invoice with its line items."""
    await OrganizationService(session).require_role(user, org_id, Role.MEMBER)
    invoice, lines = await ExternalAccountingService(session, settings).get_invoice(
        org_id, invoice_id
    )
    return InvoiceDetail(
        **InvoiceOut.model_validate(invoice).model_dump(),
        line_items=[LineItemOut.model_validate(line) for line in lines],
    )


@router.get("/accounts")
async def list_accounts(
    request: Request,
    user: CurrentUserDep,
    org_id: OrgId,
    session: SessionDep,
    settings: SettingsDep,
    connection_id: uuid.UUID | None = None,
) -> list[AccountOut]:
    """The synced chart of accounts, optionally only some types (`type=BANK`)."""
    types = _listed(request, "type", ACCOUNT_TYPES, "invalid_account_type")
    await OrganizationService(session).require_role(user, org_id, Role.MEMBER)
    accounts = await ExternalAccountingService(session, settings).list_accounts(
        org_id, types, connection_id
    )
    return [AccountOut.model_validate(a) for a in accounts]


def _run_out(run: object) -> SyncRunOut:
    out = SyncRunOut.model_validate(run)
    if out.finished_at is not None:
        out.duration_seconds = round((out.finished_at - out.started_at).total_seconds(), 3)
    return out


@router.get("/sync-runs")
async def list_sync_runs(
    user: CurrentUserDep,
    org_id: OrgId,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[SyncRunOut]:
    """Sync history, newest first: parameters, status, counts, API calls, duration, error."""
    await OrganizationService(session).require_role(user, org_id, Role.MEMBER)
    runs = await ExternalAccountingService(session, settings).list_runs(org_id, limit)
    return [_run_out(run) for run in runs]


@router.get("/sync-runs/{run_id}")
async def get_sync_run(
    run_id: uuid.UUID,
    user: CurrentUserDep,
    org_id: OrgId,
    session: SessionDep,
    settings: SettingsDep,
) -> SyncRunOut:
    """One sync run."""
    await OrganizationService(session).require_role(user, org_id, Role.MEMBER)
    return _run_out(await ExternalAccountingService(session, settings).get_run(org_id, run_id))
