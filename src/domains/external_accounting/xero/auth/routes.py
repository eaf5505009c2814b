"""Connecting Xero: the API's connect step, connect links for a browser, and Xero's callback."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode, urlparse

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from src.core.deps import SettingsDep
from src.core.errors import LedgersyncError, ValidationFailed
from src.core.openapi import Responses, error_responses, merge_responses
from src.core.settings import Settings
from src.domains.external_accounting.connections.schemas import (
    AuthorizeUrl,
    ConnectionOut,
    ConnectResult,
    ConnectSessionOut,
    RefusedTenantOut,
)
from src.domains.external_accounting.exceptions import (
    AuthorisationDenied,
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
    TenantHeldByAnotherOrganization,
)
from src.domains.external_accounting.xero.auth import pages
from src.domains.external_accounting.xero.auth.connect_service import connect_cookie_name
from src.domains.external_accounting.xero.auth.deps import ConnectServiceDep
from src.domains.organizations.deps import ADMIN_ERRORS, AdminOfOrg, OptionalCallerDep
from src.domains.organizations.exceptions import InvalidApiKey

router = APIRouter(tags=["connections"])

LOCATION = {"Location": {"description": "Where to go next", "schema": {"type": "string"}}}


def with_html_pages(responses: Responses) -> Responses:
    """A browser (no API key, not asking for JSON) gets each outcome as a small HTML page."""
    page = {"text/html": {"schema": {"type": "string"}, "example": "<!doctype html>..."}}
    for status, response in responses.items():
        if str(status) != "302":
            response.setdefault("content", {}).update(page)
    return responses


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
    access: AdminOfOrg,
    service: ConnectServiceDep,
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
    url = await service.start(access.user, access.organization_id)
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
    access: AdminOfOrg, service: ConnectServiceDep
) -> ConnectSessionOut:
    """A single-use link to connect Xero from a browser (admins and owners only)."""
    link = await service.create_link(access.user, access.organization_id)
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
    service: ConnectServiceDep,
    settings: SettingsDep,
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
                AuthorisationDenied,
                OAuthExchangeFailed,
                InvalidApiKey,
                StateMismatch,
                StateNotBound,
                TenantHeldByAnotherOrganization,
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
    caller: OptionalCallerDep,
    service: ConnectServiceDep,
    settings: SettingsDep,
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
    try:
        outcome = await service.complete(
            state=state, code=code, error=error, caller=caller, cookies=request.cookies
        )
    except LedgersyncError as failure:
        if _wants_json(request):
            raise
        if settings.xero_connect_failure_url:
            query = urlencode({"error": failure.code})
            page: Response = RedirectResponse(
                f"{settings.xero_connect_failure_url}?{query}", status_code=302
            )
        else:
            page = pages.failure_page(failure)
        return _forget_binding(page, state, settings)
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
