"""Connecting Xero and managing connections."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlencode, urlparse

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from src.core.deps import SessionDep, SessionFactoryDep, SettingsDep
from src.core.errors import LedgersyncError, ValidationFailed
from src.core.openapi import Responses, error_responses, merge_responses
from src.core.settings import Settings
from src.domains.external_accounting.connections.repository import ConnectionRepository
from src.domains.external_accounting.connections.schemas import (
    AuthorizeUrl,
    ConnectionOut,
    ConnectResult,
    ConnectSessionOut,
    RefusedTenantOut,
)
from src.domains.external_accounting.exceptions import (
    AuthorizationDenied,
    ConnectionNotFound,
    ConnectLinkNotFound,
    ConnectLinkUsed,
    InvalidState,
    OAuthExchangeFailed,
    ProviderRejected,
    ProviderUnavailable,
    StateAlreadyUsed,
    StateExpired,
    StateMismatch,
    StateNotBound,
    StateTampered,
    TenantHeldByAnotherOrganisation,
)
from src.domains.external_accounting.ledger.repository import LedgerRepository
from src.domains.external_accounting.xero.auth import pages
from src.domains.external_accounting.xero.auth.connect_service import (
    XeroConnectService,
    connect_cookie_name,
)
from src.domains.external_accounting.xero.auth.deps import (
    CipherDep,
    IdentityClientDep,
    XeroAuthManagerDep,
)
from src.domains.external_accounting.xero.auth.revocations import send_revocations
from src.domains.organizations.deps import ADMIN_ERRORS, MEMBER_ERRORS, CurrentUserDep, OrgId
from src.domains.organizations.exceptions import InsufficientRole, InvalidApiKey, NotAMember
from src.domains.organizations.models import Role, User
from src.domains.organizations.service import OrganizationService

router = APIRouter(tags=["connections"])

LOCATION = {"Location": {"description": "Where to go next", "schema": {"type": "string"}}}


def with_html_pages(responses: Responses) -> Responses:
    """A browser (no API key, not asking for JSON) gets each outcome as a small HTML page."""
    page = {"text/html": {"schema": {"type": "string"}, "example": "<!doctype html>..."}}
    for status, response in responses.items():
        if str(status) != "302":
            response.setdefault("content", {}).update(page)
    return responses


async def _optional_user(request: Request, session: SessionDep) -> User | None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return await OrganizationService(session).authenticate(key.strip())


@router.get(
    "/xero/connect",
    response_model=None,
    responses=merge_responses(
        {
            200: {"model": AuthorizeUrl, "description": "`mode=json`: the consent page's URL"},
            302: {"description": "To Xero's consent page", "headers": LOCATION},
        },
        error_responses(*ADMIN_ERRORS),
    ),
)
async def connect_xero(
    user: CurrentUserDep,
    org_id: OrgId,
    session: SessionDep,
    settings: SettingsDep,
    cipher: CipherDep,
    identity: IdentityClientDep,
    mode: Annotated[
        str,
        Query(
            pattern="^(redirect|json)$",
            description="`redirect` (302, for a browser) or `json` (the URL, for an API client)",
            examples=["json"],
        ),
    ] = "redirect",
) -> Response | AuthorizeUrl:
    """Start connecting Xero: redirect to Xero's consent page (admins and owners only)."""
    await OrganizationService(session).require_role(user, org_id, Role.ADMIN)
    url = await XeroConnectService(session, settings, cipher, identity).start(user, org_id)
    if mode == "json":
        return AuthorizeUrl(authorize_url=url)
    return RedirectResponse(url, status_code=302)


def _wants_json(request: Request) -> bool:
    """API clients (an API key, or asking for JSON) get JSON; a browser gets a page/redirect."""
    authorization = request.headers.get("authorization", "").lower()
    return authorization.startswith("bearer ") or "application/json" in request.headers.get(
        "accept", ""
    )


def _cookie_path(settings: Settings) -> str:
    """The binding cookie goes only to the callback."""
    return urlparse(settings.xero_redirect_uri).path or "/"


@router.post(
    "/connect-sessions",
    status_code=201,
    responses=error_responses(*ADMIN_ERRORS),
)
async def create_connect_session(
    user: CurrentUserDep,
    org_id: OrgId,
    session: SessionDep,
    settings: SettingsDep,
    cipher: CipherDep,
    identity: IdentityClientDep,
) -> ConnectSessionOut:
    """A single-use link to connect Xero from a browser (admins and owners only)."""
    await OrganizationService(session).require_role(user, org_id, Role.ADMIN)
    link = await XeroConnectService(session, settings, cipher, identity).create_link(user, org_id)
    return ConnectSessionOut(url=link.url, expires_at=link.expires_at)


@router.get(
    "/connect-sessions/{session_id}/open",
    response_model=None,
    status_code=302,
    response_class=RedirectResponse,
    responses=with_html_pages(
        merge_responses(
            {302: {"description": "To Xero's consent page", "headers": LOCATION}},
            error_responses(
                ConnectLinkNotFound, StateTampered, ConnectLinkUsed, StateExpired, ValidationFailed
            ),
        )
    ),
)
async def open_connect_session(
    session_id: Annotated[
        str,
        Path(
            max_length=64,
            description="The connect link's id, as in its URL",
            examples=["3f2b9c1d8e7a4b6c9d0e1f2a3b4c5d6e"],
        ),
    ],
    session: SessionDep,
    settings: SettingsDep,
    cipher: CipherDep,
    identity: IdentityClientDep,
    secret: Annotated[
        str,
        Query(
            min_length=1,
            max_length=200,
            description="The link's single-use secret, as in its URL",
            examples=["Zm9yLWV4YW1wbGUtb25seQ"],
        ),
    ],
) -> Response:
    """Open a connect link: bind this browser to the flow (a cookie) and go to Xero's consent."""
    service = XeroConnectService(session, settings, cipher, identity)
    try:
        opened = await service.open_link(session_id, secret)
    except LedgersyncError as failure:
        return pages.failure_page(failure)
    response = RedirectResponse(opened.authorize_url, status_code=302)
    response.set_cookie(
        opened.cookie_name,
        opened.cookie_value,
        max_age=opened.max_age,
        path=_cookie_path(settings),
        secure=settings.xero_redirect_uri.startswith("https://"),
        httponly=True,
        samesite="lax",  # sent on Xero's top-level redirect back to us, not on cross-site posts
    )
    return response


@router.get(
    "/xero/callback",
    response_model=None,
    responses=with_html_pages(
        merge_responses(
            {
                200: {"model": ConnectResult, "description": "The connections stored"},
                302: {
                    "description": "A browser, when `XERO_CONNECT_SUCCESS_URL` or "
                    "`XERO_CONNECT_FAILURE_URL` is set: there, with the outcome in the query",
                    "headers": LOCATION,
                },
            },
            error_responses(
                InvalidState,
                StateTampered,
                StateExpired,
                StateAlreadyUsed,
                AuthorizationDenied,
                OAuthExchangeFailed,
                InvalidApiKey,
                StateMismatch,
                StateNotBound,
                TenantHeldByAnotherOrganisation,
                ConnectionNotFound,
                ValidationFailed,
                ProviderUnavailable,
                ProviderRejected,
            ),
        )
    ),
)
async def xero_callback(
    request: Request,
    session: SessionDep,
    session_factory: SessionFactoryDep,
    settings: SettingsDep,
    cipher: CipherDep,
    identity: IdentityClientDep,
    state: Annotated[
        str,
        Query(
            min_length=1,
            max_length=200,
            description="The state our connect step issued",
            examples=["3f2b9c1d8e7a4b6c9d0e1f2a3b4c5d6e.Zm9yLWV4YW1wbGUtb25seQ"],
        ),
    ],
    code: Annotated[
        str | None,
        Query(
            max_length=2000,
            description="Xero's authorisation code",
            examples=["4c1a0e6f2b9d8e7c"],
        ),
    ] = None,
    error: Annotated[
        str | None, Query(max_length=200, description="Xero's error", examples=["access_denied"])
    ] = None,
) -> Response | ConnectResult:
    """Where Xero sends the user back: verify the state is this browser's (or this API key's),
    exchange the code, store connections. JSON for API clients; a page or redirect otherwise."""
    caller = await _optional_user(request, session)
    service = XeroConnectService(session, settings, cipher, identity)
    try:
        outcome = await service.complete(
            state=state, code=code, error=error, caller=caller, cookies=request.cookies
        )
        if not outcome.connections:
            raise ConnectionNotFound("Xero granted access to no organisation.")
    except LedgersyncError as failure:
        if _wants_json(request):
            raise
        await session.rollback()
        if settings.xero_connect_failure_url:
            query = urlencode({"error": failure.code})
            page: Response = RedirectResponse(
                f"{settings.xero_connect_failure_url}?{query}", status_code=302
            )
        else:
            page = pages.failure_page(failure)
        return _forget_binding(page, state, settings)
    # Committed before anything is said or sent: then the token sets this consent replaced are
    # revoked at Xero, outside any write transaction.
    await session.commit()
    await send_revocations(session_factory, settings, cipher, identity, service.queued_revocations)
    if _wants_json(request):
        return ConnectResult(
            organization_id=outcome.organization_id,
            connections=[ConnectionOut.model_validate(c) for c in outcome.connections],
            refused=[RefusedTenantOut(**vars(r)) for r in outcome.refused],
        )
    if settings.xero_connect_success_url:
        query = urlencode(
            {"org_id": str(outcome.organization_id), "connections": len(outcome.connections)}
        )
        page = RedirectResponse(f"{settings.xero_connect_success_url}?{query}", status_code=302)
    else:
        page = pages.connected_page(outcome)
    return _forget_binding(page, state, settings)


def _forget_binding(response: Response, state: str, settings: Settings) -> Response:
    """The flow is over either way: the binding cookie has done its job."""
    name = connect_cookie_name(state)
    if name is not None:
        response.delete_cookie(name, path=_cookie_path(settings), httponly=True, samesite="lax")
    return response


@router.get("/connections", responses=error_responses(*MEMBER_ERRORS))
async def list_connections(
    user: CurrentUserDep, org_id: OrgId, session: SessionDep
) -> list[ConnectionOut]:
    """The organisation's connections with their status and last sync."""
    await OrganizationService(session).require_role(user, org_id, Role.MEMBER)
    connections = await ConnectionRepository(session).list_for_org(org_id)
    return [ConnectionOut.model_validate(c) for c in connections]


@router.delete(
    "/connections/{connection_id}",
    status_code=204,
    # Another organisation's connection is a 404, not a 403: nothing is learnt about it.
    responses=error_responses(
        InvalidApiKey, InsufficientRole, ConnectionNotFound, ValidationFailed
    ),
)
async def disconnect(
    connection_id: Annotated[
        uuid.UUID,
        Path(description="The connection's id", examples=["2d3e4f50-6172-4839-a4b5-c6d7e8f90a1b"]),
    ],
    user: CurrentUserDep,
    session: SessionDep,
    settings: SettingsDep,
    cipher: CipherDep,
    identity: IdentityClientDep,
    auth: XeroAuthManagerDep,
    session_factory: SessionFactoryDep,
    purge: Annotated[
        bool,
        Query(
            description="Also delete the connection's synced invoices and accounts",
            examples=[False],
        ),
    ] = False,
) -> Response:
    """Disconnect at Xero and erase its tokens here; synced data is kept unless `purge=true`."""
    connection = await ConnectionRepository(session).get(connection_id)
    if connection is None:
        raise ConnectionNotFound(f"Connection {connection_id} does not exist.")
    try:
        await OrganizationService(session).require_role(
            user, connection.organization_id, Role.ADMIN
        )
    except NotAMember:
        raise ConnectionNotFound(f"Connection {connection_id} does not exist.") from None
    service = XeroConnectService(session, settings, cipher, identity)
    await service.leave_xero(connection, auth)  # Xero first: no lock is held across the call
    # One transaction fences off running syncs, disconnects and purges. The runs are locked
    # first, as a finishing sync locks its run before the connection (no deadlock); each fenced
    # run stops at its next page instead of writing back what the purge deletes.
    ledger = LedgerRepository(session)
    await ledger.cancel_running_runs(connection.id, "The connection was disconnected.")
    await service.forget(connection)
    if purge:
        await ledger.purge_connection(connection.id)
    await session.commit()
    await send_revocations(session_factory, settings, cipher, identity, service.queued_revocations)
    return Response(status_code=204)
