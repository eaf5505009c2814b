"""Sync endpoints and reads of what was synced (thin: parse, call the service; who may call
each route is declared, as a dependency)."""

from __future__ import annotations

import base64
import inspect
import uuid
from collections.abc import Collection
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import WithJsonSchema

from src.core.deps import SessionDep, UtcDatetime
from src.core.openapi import error_responses, merge_responses
from src.domains.external_accounting.base.sync import (
    AccountSyncRequest,
    InvoiceSyncRequest,
    SyncResult,
)
from src.domains.external_accounting.connections.models import Provider
from src.domains.external_accounting.deps import FactoryDep, JobAppDep
from src.domains.external_accounting.exceptions import (
    ConnectionNotFound,
    FullSyncRequiresAdmin,
    InvalidSyncParameter,
    NoActiveConnection,
    ReauthorisationRequired,
    RecordNotFound,
    SyncInProgress,
    SyncRateLimited,
    SyncRunFinished,
)
from src.domains.external_accounting.ledger.filters import InvoiceFilters
from src.domains.external_accounting.ledger.models import INVOICE_TYPES
from src.domains.external_accounting.ledger.schemas import (
    QUEUED_SYNC_RUNS_EXAMPLE,
    SYNC_RESULT_EXAMPLE,
    SYNC_RUN_EXAMPLE,
    AccountOut,
    InvoiceDetail,
    InvoiceOut,
    InvoicePage,
    LineItemOut,
    QueuedSyncRun,
    QueuedSyncRuns,
    SyncRunOut,
)
from src.domains.external_accounting.ledger.service import LedgerService
from src.domains.external_accounting.syncs.policy import (
    IncrementalQuery,
    invoice_sync_allowed,
    sync_allowed,
)
from src.domains.external_accounting.syncs.service import SyncRequest, SyncsService
from src.domains.organizations.deps import MEMBER_ERRORS, MemberOfOrg

router = APIRouter(tags=["sync"])

# What the routes below can answer besides their result (the access check's errors included).
# A sync's provider errors are not among them: they are in its result, per connection.
LIST_RESPONSES = error_responses(*MEMBER_ERRORS)
RECORD_RESPONSES = error_responses(*MEMBER_ERRORS, RecordNotFound)
SYNC_RESPONSES = merge_responses(
    {200: {"content": {"application/json": {"example": SYNC_RESULT_EXAMPLE}}}},
    {
        202: {
            "model": QueuedSyncRuns,
            "description": "`background=true`: the runs queued (or already under way), one per "
            "connection; follow each at `GET /sync-runs/{id}`",
            "headers": {
                "Location": {
                    "description": "The first run, `/external-accounting/sync-runs/{id}`",
                    "schema": {"type": "string"},
                    "example": f"/external-accounting/sync-runs/{SYNC_RUN_EXAMPLE['id']}",
                }
            },
            "content": {"application/json": {"example": QUEUED_SYNC_RUNS_EXAMPLE}},
        }
    },
    error_responses(
        *MEMBER_ERRORS,
        FullSyncRequiresAdmin,  # a full sync (`incremental=false`) is for admins
        ConnectionNotFound,
        NoActiveConnection,
        ReauthorisationRequired,
        SyncInProgress,
        SyncRateLimited,  # the organisation started its limit of syncs in the window
    ),
)

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

BackgroundQuery = Annotated[
    bool,
    Query(
        description="Queue the sync and answer 202 at once with its runs (false: sync now and "
        "answer the result)",
        examples=[True],
    ),
]


async def _sync_or_queue(
    request: Request,
    service: SyncsService,
    sync_request: SyncRequest,
    background: bool,
    job_app: JobAppDep,
) -> SyncResult | JSONResponse:
    if not background:
        return await service.sync(sync_request)
    runs = await service.queue(sync_request, job_app)
    body = QueuedSyncRuns(sync_runs=[QueuedSyncRun.model_validate(run) for run in runs])
    # Under the prefix this request came through (`/external-accounting` or `/integrations`).
    prefix = request.url.path.rsplit("/", 2)[0]
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=202,
        headers={"Location": f"{prefix}/sync-runs/{runs[0].id}"},
    )


INVOICE_STATUSES = {"DRAFT", "SUBMITTED", "AUTHORISED", "PAID", "VOIDED", "DELETED"}

ConnectionFilter = Annotated[
    uuid.UUID | None,
    Query(
        description="Only this connection (one of the organisation's)",
        examples=["2d3e4f50-6172-4839-a4b5-c6d7e8f90a1b"],
    ),
]
TenantFilter = Annotated[
    str | None,
    Query(
        max_length=64,
        description="Only the connection to this Xero tenant (organisation)",
        examples=["a3b4c5d6-e7f8-4a9b-8c0d-1e2f3a4b5c6d"],
    ),
]


def _listed(name: str, raw: list[str], allowed: Collection[str]) -> list[str]:
    values = [part.strip().upper() for item in raw for part in item.split(",") if part.strip()]
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise InvalidSyncParameter(
            f"Unknown {name} {', '.join(unknown)}; expected one of {', '.join(sorted(allowed))}.",
            parameter=name,
        )
    return sorted(set(values))


def listed_query(name: str, allowed: Collection[str], what: str) -> Any:
    """A dependency for a list parameter in each spelling callers use: `name[]=A&name[]=B`,
    `name=A&name=B` or `name=A,B`, any case. Both names are declared (not read by hand from the
    query string) so that the OpenAPI document lists them."""
    description = f"{what}; any case, repeated or separated by commas"
    example = sorted(allowed)[0]
    item = {"type": "string", "enum": sorted(allowed)}

    def parse(bracketed: list[str] | None = None, plain: list[str] | None = None) -> list[str]:
        return _listed(name, [*(bracketed or []), *(plain or [])], allowed)

    spellings = {"bracketed": f"{name}[]", "plain": name}
    # A signature built here, because the names are data: FastAPI reads parameters from it.
    parse.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                argument,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    list[Annotated[str, WithJsonSchema(item)]] | None,
                    Query(alias=alias, description=description, examples=[[example]]),
                ],
            )
            for argument, alias in spellings.items()
        ]
    )
    return Depends(parse)


def get_ledger_service(session: SessionDep) -> LedgerService:
    """The read service on the request's session."""
    return LedgerService(session)


LedgerServiceDep = Annotated[LedgerService, Depends(get_ledger_service)]


InvoiceTypesQuery = Annotated[
    list[str], listed_query("invoice_types", INVOICE_TYPES, "Invoice types to sync (default both)")
]
AccountTypesQuery = Annotated[
    list[str], listed_query("account_types", ACCOUNT_TYPES, "Account types to sync (default all)")
]
InvoiceTypeFilter = Annotated[list[str], listed_query("type", INVOICE_TYPES, "Invoice types")]
InvoiceStatusFilter = Annotated[list[str], listed_query("status", INVOICE_STATUSES, "Statuses")]
AccountTypeFilter = Annotated[list[str], listed_query("type", ACCOUNT_TYPES, "Account types")]


@router.post(
    "/invoices/sync",
    response_model=SyncResult,
    responses=SYNC_RESPONSES,
    dependencies=[Depends(invoice_sync_allowed)],
)
async def sync_invoices(
    request: Request,
    access: MemberOfOrg,
    session: SessionDep,
    factory: FactoryDep,
    job_app: JobAppDep,
    types: InvoiceTypesQuery,
    incremental: IncrementalQuery = True,
    months_back: Annotated[
        int,
        Query(
            ge=1,
            le=120,
            description="A full sync's window: invoices dated since then",
            examples=[12],
        ),
    ] = 12,
    connection_id: ConnectionFilter = None,
    tenant_id: TenantFilter = None,
    background: BackgroundQuery = False,
) -> SyncResult | JSONResponse:
    """Sync invoices from the organisation's accounting connections; returns a summary only
    (with `background=true`, 202 and the queued runs at once)."""
    sync_request = InvoiceSyncRequest(
        organization_id=access.organization_id,
        provider=Provider.XERO,
        connection_id=connection_id,
        tenant_id=tenant_id,
        incremental=incremental,
        invoice_types=types or sorted(INVOICE_TYPES),
        months_back=months_back,
    )
    service = SyncsService(session, factory)
    return await _sync_or_queue(request, service, sync_request, background, job_app)


@router.post(
    "/accounts/sync",
    response_model=SyncResult,
    responses=SYNC_RESPONSES,
    dependencies=[Depends(sync_allowed)],
)
async def sync_accounts(
    request: Request,
    access: MemberOfOrg,
    session: SessionDep,
    factory: FactoryDep,
    job_app: JobAppDep,
    types: AccountTypesQuery,
    connection_id: ConnectionFilter = None,
    tenant_id: TenantFilter = None,
    background: BackgroundQuery = False,
) -> SyncResult | JSONResponse:
    """Sync the chart of accounts (optionally only some account types); returns a summary only
    (with `background=true`, 202 and the queued runs at once)."""
    sync_request = AccountSyncRequest(
        organization_id=access.organization_id,
        provider=Provider.XERO,
        connection_id=connection_id,
        tenant_id=tenant_id,
        account_types=types or None,
    )
    service = SyncsService(session, factory)
    return await _sync_or_queue(request, service, sync_request, background, job_app)


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


async def invoice_filters(
    types: InvoiceTypeFilter,
    statuses: InvoiceStatusFilter,
    connection_id: ConnectionFilter = None,
    contact_id: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Xero's ContactID of the invoices' contact",
            examples=["7e8f9a0b-1c2d-4e3f-8a5b-6c7d8e9f0a1b"],
        ),
    ] = None,
    date_from: Annotated[
        date | None, Query(description="Dated on or after", examples=["2026-01-01"])
    ] = None,
    date_to: Annotated[
        date | None, Query(description="Dated on or before", examples=["2026-12-31"])
    ] = None,
    updated_since: Annotated[
        UtcDatetime | None,
        Query(
            description="Changed at Xero at or after this instant (with a timezone)",
            examples=["2025-07-22T14:30:00Z"],
        ),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(
            max_length=200,
            description="`next_cursor` of the previous page",
            examples=["MjAyNi0xMS0wMnw1YTZi"],
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size", examples=[100])] = 100,
) -> InvoiceFilters:
    """The invoice list's query parameters, as one object (the cursor decoded)."""
    return InvoiceFilters(
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


InvoiceFiltersQuery = Annotated[InvoiceFilters, Depends(invoice_filters)]


@router.get("/invoices", responses=LIST_RESPONSES)
async def list_invoices(
    access: MemberOfOrg, ledger: LedgerServiceDep, filters: InvoiceFiltersQuery
) -> InvoicePage:
    """Synced invoices, newest first; filter by type, status, contact, dates; keyset paging."""
    invoices = await ledger.list_invoices(access.organization_id, filters)
    items = [InvoiceOut.model_validate(i) for i in invoices]
    next_cursor = _encode_cursor(items[-1]) if len(items) == filters.limit else None
    return InvoicePage(items=items, next_cursor=next_cursor)


# `:uuid` so that `/invoices/sync` is not an invoice id: a GET there is a 405, not a 422.
@router.get("/invoices/{invoice_id:uuid}", responses=RECORD_RESPONSES)
async def get_invoice(
    invoice_id: Annotated[
        uuid.UUID,
        Path(
            description="The invoice's id here", examples=["5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"]
        ),
    ],
    access: MemberOfOrg,
    ledger: LedgerServiceDep,
) -> InvoiceDetail:
    """One synced invoice with its line items."""
    invoice, lines = await ledger.get_invoice(access.organization_id, invoice_id)
    return InvoiceDetail(
        **InvoiceOut.model_validate(invoice).model_dump(),
        line_items=[LineItemOut.model_validate(line) for line in lines],
    )


@router.get("/accounts", responses=LIST_RESPONSES)
async def list_accounts(
    access: MemberOfOrg,
    ledger: LedgerServiceDep,
    types: AccountTypeFilter,
    connection_id: ConnectionFilter = None,
) -> list[AccountOut]:
    """The synced chart of accounts, optionally only some types (`type=BANK`)."""
    accounts = await ledger.list_accounts(
        access.organization_id, types=types, connection_id=connection_id
    )
    return [AccountOut.model_validate(a) for a in accounts]


def _run_out(run: object) -> SyncRunOut:
    out = SyncRunOut.model_validate(run)
    if out.finished_at is not None:
        out.duration_seconds = round((out.finished_at - out.started_at).total_seconds(), 3)
    return out


@router.get("/sync-runs", responses=LIST_RESPONSES)
async def list_sync_runs(
    access: MemberOfOrg,
    ledger: LedgerServiceDep,
    limit: Annotated[int, Query(ge=1, le=500, description="How many runs", examples=[50])] = 50,
) -> list[SyncRunOut]:
    """Sync history, newest first: parameters, status, counts, API calls, duration, error."""
    runs = await ledger.list_runs(access.organization_id, limit)
    return [_run_out(run) for run in runs]


RunIdPath = Annotated[
    uuid.UUID,
    Path(description="The sync run's id", examples=["0b9c8d7e-6f5a-4b3c-8d2e-1f0a9b8c7d6e"]),
]


@router.get("/sync-runs/{run_id}", responses=RECORD_RESPONSES)
async def get_sync_run(
    run_id: RunIdPath, access: MemberOfOrg, ledger: LedgerServiceDep
) -> SyncRunOut:
    """One sync run, with its live progress while it runs: pages and invoices so far, API
    calls, the phase, and the seconds spent waiting on Xero's limits."""
    return _run_out(await ledger.get_run(access.organization_id, run_id))


CANCEL_RESPONSES = error_responses(*MEMBER_ERRORS, RecordNotFound, SyncRunFinished)


@router.post("/sync-runs/{run_id}/cancel", responses=CANCEL_RESPONSES)
async def cancel_sync_run(
    run_id: RunIdPath,
    access: MemberOfOrg,
    session: SessionDep,
    factory: FactoryDep,
    job_app: JobAppDep,
) -> SyncRunOut:
    """Cancel a run that has not ended: a queued one (or one paused until its resume) never
    runs; a running one stops at its next page boundary, keeping the pages it stored. A run
    that already ended: 409 `sync_run_finished`."""
    run = await SyncsService(session, factory).cancel(access.organization_id, run_id, job_app)
    return _run_out(run)
