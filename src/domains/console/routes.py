"""The console at `/console`: server-rendered pages for people, on the services the API uses.
Routes hold no rules: access is a dependency (a signed-in member, an admin, a form with this
session's CSRF token), the services decide, the templates show. Errors become pages (or, for a
browser that is not signed in, the sign-in page), never JSON."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Coroutine
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from src.core.deps import SessionDep, SettingsDep
from src.core.errors import LedgersyncError, Unauthenticated, ValidationFailed
from src.domains.console import charts, formatting
from src.domains.console.deps import (
    CSRF_FIELD,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    AdminForm,
    ConsoleSessionsDep,
    ConsoleViewsDep,
    MemberForm,
    SignedInAdmin,
    SignedInMember,
)
from src.domains.console.service import ConsoleSignIn
from src.domains.external_accounting.base.sync import InvoiceSyncRequest
from src.domains.external_accounting.connections.deps import ConnectionServiceDep
from src.domains.external_accounting.connections.models import Provider
from src.domains.external_accounting.deps import FactoryDep, JobAppDep
from src.domains.external_accounting.ledger.deps import LedgerReads
from src.domains.external_accounting.ledger.filters import InvoiceFilters
from src.domains.external_accounting.outbound.deps import EndpointServiceDep
from src.domains.external_accounting.syncs.policy import SyncRequestPolicy
from src.domains.external_accounting.syncs.service import SyncsService
from src.domains.external_accounting.xero.auth.deps import ConnectServiceDep
from src.domains.organizations.service import ApiCaller

PACKAGE = Path(__file__).parent
STATIC_PATH = "/console/static"
templates = Jinja2Templates(directory=PACKAGE / "templates")
templates.env.filters["money"] = formatting.money
templates.env.filters["quantity"] = formatting.quantity
templates.env.globals["history_value"] = formatting.history_value

# No inline script or style anywhere, nothing from another origin, no framing, no caching.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self' http: https:",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

INVOICE_STATUSES = ("DRAFT", "SUBMITTED", "AUTHORISED", "PAID", "VOIDED", "DELETED")
INVOICE_TYPES = ("ACCREC", "ACCPAY")


def _sign_in_redirect() -> Response:
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/console", httponly=True, samesite="lax")
    return response


class ConsoleRoute(APIRoute):
    """A console route: a typed error becomes a page, and a browser that is not signed in (or
    whose session ended) goes to the sign-in page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                response = await handler(request)
            except Unauthenticated:
                return _sign_in_redirect()
            except RequestValidationError:
                # A malformed id in the address, a form field missing: a page, not JSON.
                invalid = ValidationFailed("Part of the address or of the form is not valid.")
                response = templates.TemplateResponse(
                    request, "error.html", {"error": invalid, "signed": None}, status_code=422
                )
            except LedgersyncError as failure:
                response = templates.TemplateResponse(
                    request,
                    "error.html",
                    {"error": failure, "signed": None},
                    status_code=failure.status_code,
                )
            response.headers.update(HEADERS)
            return response

        return handle


router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


def page(request: Request, name: str, signed: ConsoleSignIn | None, **context: Any) -> HTMLResponse:
    """A console page; every page knows who is signed in (the menu, the forms' CSRF token)."""
    return templates.TemplateResponse(
        request, name, {"signed": signed, "csrf_field": CSRF_FIELD, **context}
    )


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


# -- signing in and out -----------------------------------------------------------------------


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    """The sign-in form; its CSRF token is a cookie of its own (there is no session yet)."""
    return _sign_in_form(request)


@router.post("/sign-in")
async def sign_in(
    request: Request,
    sessions: ConsoleSessionsDep,
    settings: SettingsDep,
    api_key: Annotated[str, Form(max_length=500)],
    csrf_token: Annotated[str, Form(max_length=100)],
) -> Response:
    """Exchange an API key (typed into a password field) for a session cookie."""
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    if not expected or not secrets.compare_digest(expected, csrf_token):
        problem = "The sign-in form was out of date; try again."
        return _sign_in_form(request, problem, 403)
    try:
        signed = await sessions.sign_in(api_key)
    except LedgersyncError as failure:
        return _sign_in_form(request, failure.detail, failure.status_code)
    response = RedirectResponse("/console/connections", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        signed.token,
        max_age=settings.console_session_ttl_seconds,
        path="/console",
        secure=_secure(request),
        httponly=True,
        samesite="lax",
    )
    response.delete_cookie(SIGN_IN_COOKIE, path="/console/sign-in")
    return response


def _sign_in_form(request: Request, problem: str | None = None, status: int = 200) -> Response:
    """The sign-in form with a fresh CSRF token in its own cookie, and what went wrong."""
    token = secrets.token_urlsafe(32)
    response = page(request, "sign_in.html", None, sign_in_token=token, problem=problem)
    response.status_code = status
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        max_age=3600,
        path="/console/sign-in",
        secure=_secure(request),
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/sign-out")
async def sign_out(signed: MemberForm, sessions: ConsoleSessionsDep) -> Response:
    """End the session here (its row is deleted) and in the browser."""
    await sessions.sign_out(signed)
    return _sign_in_redirect()


# -- connections ------------------------------------------------------------------------------


@router.get("")
async def home() -> Response:
    return RedirectResponse("/console/connections", status_code=303)


@router.get("/connections")
async def connections(request: Request, signed: SignedInMember, views: ConsoleViewsDep) -> Response:
    """The organisation's Xero connections: status, freshness, schedule, today's calls."""
    cards = await views.connection_views(signed.access)
    return page(
        request,
        "connections.html",
        signed,
        cards=cards,
        charts={
            card.connection.id: charts.usage_chart(
                card.usage.days, day_limit=card.day_limit, reserve=card.day_reserve
            )
            for card in cards
        },
    )


@router.post("/connect")
async def connect(signed: AdminForm, service: ConnectServiceDep) -> Response:
    """Connect Xero: a single-use connect link, opened at once in this browser (the link binds
    the consent to it)."""
    link = await service.create_link(signed.access.user, signed.access.organization_id)
    return RedirectResponse(link.url, status_code=303)


@router.post("/connections/{connection_id}/reauthorise")
async def reauthorise(
    connection_id: uuid.UUID,
    signed: AdminForm,
    views: ConsoleViewsDep,
    service: ConnectServiceDep,
) -> Response:
    """Re-authorise: the same consent again, which makes the connection active again."""
    await views.connection(signed.access, connection_id)
    link = await service.create_link(signed.access.user, signed.access.organization_id)
    return RedirectResponse(link.url, status_code=303)


@router.post("/connections/{connection_id}/sync")
async def sync_now(
    connection_id: uuid.UUID,
    signed: MemberForm,
    views: ConsoleViewsDep,
    session: SessionDep,
    settings: SettingsDep,
    factory: FactoryDep,
    job_app: JobAppDep,
) -> Response:
    """Sync now: an incremental invoice sync in the background, then its progress page."""
    connection = await views.connection(signed.access, connection_id)
    await SyncRequestPolicy(session, settings).check(signed.access, full=False)
    runs = await SyncsService(session, factory).queue(
        InvoiceSyncRequest(
            organization_id=signed.access.organization_id,
            provider=Provider(connection.provider),
            connection_id=connection.id,
        ),
        job_app,
    )
    return RedirectResponse(f"/console/runs/{runs[0].id}", status_code=303)


@router.get("/connections/{connection_id}/disconnect")
async def disconnect_page(
    request: Request, connection_id: uuid.UUID, signed: SignedInAdmin, views: ConsoleViewsDep
) -> Response:
    """Ask before disconnecting."""
    connection = await views.connection(signed.access, connection_id)
    return page(request, "disconnect.html", signed, connection=connection)


@router.post("/connections/{connection_id}/disconnect")
async def disconnect(
    connection_id: uuid.UUID,
    signed: AdminForm,
    service: ConnectionServiceDep,
    purge: Annotated[bool, Form()] = False,
) -> Response:
    """Disconnect at Xero and erase the tokens here (the API's DELETE /connections/{id})."""
    caller = ApiCaller(user=signed.access.user, organization_id=signed.access.organization_id)
    connection = await service.get_administered(caller, connection_id)
    await service.disconnect(connection, purge=purge)
    return RedirectResponse("/console/connections", status_code=303)


# -- sync runs --------------------------------------------------------------------------------


@router.get("/runs")
async def runs(request: Request, signed: SignedInMember, views: ConsoleViewsDep) -> Response:
    """Recent sync runs."""
    return page(request, "runs.html", signed, runs=await views.runs(signed.access))


@router.get("/runs/{run_id}")
async def run(
    request: Request, run_id: uuid.UUID, signed: SignedInMember, views: ConsoleViewsDep
) -> Response:
    """One sync run, with a progress bar that follows it live."""
    return page(request, "run.html", signed, view=await views.run(signed.access, run_id))


@router.get("/runs/{run_id}/progress")
async def run_progress(
    request: Request, run_id: uuid.UUID, signed: SignedInMember, views: ConsoleViewsDep
) -> Response:
    """The progress fragment the run page polls."""
    return page(request, "_progress.html", signed, view=await views.run(signed.access, run_id))


# -- invoices ---------------------------------------------------------------------------------


def _date(name: str, value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(f"{name} must be a date (YYYY-MM-DD).", parameter=name) from None


@router.get("/invoices")
async def invoices(
    request: Request,
    signed: SignedInMember,
    views: ConsoleViewsDep,
    ledger: LedgerReads,
    status: Annotated[str | None, Query(max_length=20)] = None,
    type: Annotated[str | None, Query(max_length=20)] = None,
    contact: Annotated[str | None, Query(max_length=64)] = None,
    date_from: Annotated[str | None, Query(max_length=10)] = None,
    date_to: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    """Synced invoices, filtered; and charts of them by status and by how long they are owed."""
    if status and status not in INVOICE_STATUSES:
        raise ValidationFailed(f"Unknown status {status!r}.", parameter="status")
    if type and type not in INVOICE_TYPES:
        raise ValidationFailed(f"Unknown type {type!r}.", parameter="type")
    filters = InvoiceFilters(
        statuses=[status] if status else [],
        types=[type] if type else [],
        contact_id=contact or None,
        date_from=_date("date_from", date_from),
        date_to=_date("date_to", date_to),
        limit=100,
    )
    counts = await views.status_counts(signed.access)
    by_status: dict[str, int] = {}
    for row in counts:
        by_status[row.status] = by_status.get(row.status, 0) + row.invoices
    ages = await views.outstanding_by_age(signed.access)
    return page(
        request,
        "invoices.html",
        signed,
        invoices=await ledger.list_invoices(signed.access.organization_id, filters),
        contacts=await views.contacts(signed.access),
        filters={
            "status": status or "",
            "type": type or "",
            "contact": contact or "",
            "date_from": date_from or "",
            "date_to": date_to or "",
        },
        statuses=INVOICE_STATUSES,
        types=INVOICE_TYPES,
        status_chart=charts.bar_chart(
            [(name, count, f"{count:,}") for name, count in sorted(by_status.items())],
            label="Invoices by status",
        ),
        age_charts={
            key: charts.bar_chart(
                [
                    (b.label, float(b.amount), f"{formatting.money(b.amount)} ({b.invoices})")
                    for b in buckets
                ],
                label=f"Amount outstanding by age, {key}",
            )
            for key, buckets in ages.items()
        },
    )


@router.get("/invoices/{invoice_id}")
async def invoice(
    request: Request, invoice_id: uuid.UUID, signed: SignedInMember, ledger: LedgerReads
) -> Response:
    """One invoice with its line items and its recorded history."""
    found, lines = await ledger.get_invoice(signed.access.organization_id, invoice_id)
    _, versions = await ledger.invoice_history(signed.access.organization_id, invoice_id)
    return page(request, "invoice.html", signed, invoice=found, lines=lines, versions=versions)


# -- outbound webhooks (admins) ---------------------------------------------------------------


@router.get("/webhooks")
async def webhooks(
    request: Request, signed: SignedInAdmin, endpoints: EndpointServiceDep
) -> Response:
    """The organisation's webhook endpoints and the delivery log of each."""
    listed = await endpoints.list(signed.access.organization_id)
    logs = {
        endpoint.id: await endpoints.delivery_log(
            signed.access.organization_id, endpoint.id, limit=50
        )
        for endpoint in listed
    }
    return page(request, "webhooks.html", signed, endpoints=listed, logs=logs)


def ago(delta: timedelta | None) -> str:
    """`3 minutes ago`, for a person."""
    if delta is None:
        return "never"
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


templates.env.globals["ago"] = ago
templates.env.globals["static"] = lambda name: f"{STATIC_PATH}/{name}"
