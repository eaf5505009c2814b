"""Connecting Xero and managing connections."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from src.core.deps import SessionDep, SettingsDep
from src.core.errors import ValidationFailed
from src.core.openapi import error_responses, merge_responses
from src.domains.external_accounting.exceptions import (
    AuthorizationDenied,
    ConnectionNotFound,
    InvalidState,
    OAuthExchangeFailed,
    ProviderRejected,
    ProviderUnavailable,
    StateAlreadyUsed,
    StateExpired,
    StateMismatch,
    StateTampered,
)
from src.domains.external_accounting.ledger_repository import LedgerRepository
from src.domains.external_accounting.repository import ConnectionRepository
from src.domains.external_accounting.schemas import AuthorizeUrl, ConnectionOut, ConnectResult
from src.domains.external_accounting.xero.auth.connect_service import XeroConnectService
from src.domains.external_accounting.xero.auth.deps import (
    CipherDep,
    IdentityClientDep,
    XeroAuthManagerDep,
)
from src.domains.organizations.deps import ADMIN_ERRORS, MEMBER_ERRORS, CurrentUserDep
from src.domains.organizations.exceptions import InsufficientRole, InvalidApiKey, NotAMember
from src.domains.organizations.models import Role, User
from src.domains.organizations.service import OrganizationService

router = APIRouter(tags=["connections"])

OrgId = Annotated[
    uuid.UUID,
    Query(
        description="The customer organisation", examples=["6f1c2a8e-3b4d-4c5e-9f60-718293a4b5c6"]
    ),
]
LOCATION = {"Location": {"description": "Where to go next", "schema": {"type": "string"}}}


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


@router.get(
    "/xero/callback",
    response_model=None,
    responses=merge_responses(
        {
            200: {"model": ConnectResult, "description": "The connections stored"},
            302: {"description": "To `XERO_CONNECT_SUCCESS_URL`, when set", "headers": LOCATION},
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
            ConnectionNotFound,
            ValidationFailed,
            ProviderUnavailable,
            ProviderRejected,
        ),
    ),
)
async def xero_callback(
    request: Request,
    session: SessionDep,
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
    """Where Xero sends the user back: verify the state, exchange the code, store connections."""
    caller = await _optional_user(request, session)
    service = XeroConnectService(session, settings, cipher, identity)
    connections = await service.complete(state=state, code=code, error=error, caller=caller)
    organization_id = connections[0].organization_id if connections else None
    if settings.xero_connect_success_url and organization_id is not None:
        query = urlencode({"org_id": str(organization_id), "connections": len(connections)})
        return RedirectResponse(f"{settings.xero_connect_success_url}?{query}", status_code=302)
    if organization_id is None:
        raise ConnectionNotFound("Xero granted access to no organisation.")
    return ConnectResult(
        organization_id=organization_id,
        connections=[ConnectionOut.model_validate(c) for c in connections],
    )


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
    await XeroConnectService(session, settings, cipher, identity).disconnect(connection, auth)
    if purge:
        await LedgerRepository(session).purge_connection(connection.id)
    return Response(status_code=204)
