"""Connecting Xero and managing connections."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from src.core.deps import SessionDep, SettingsDep
from src.domains.external_accounting.exceptions import ConnectionNotFound
from src.domains.external_accounting.ledger_repository import LedgerRepository
from src.domains.external_accounting.repository import ConnectionRepository
from src.domains.external_accounting.schemas import AuthorizeUrl, ConnectionOut, ConnectResult
from src.domains.external_accounting.xero.auth.connect_service import XeroConnectService
from src.domains.external_accounting.xero.auth.deps import (
    CipherDep,
    IdentityClientDep,
    XeroAuthManagerDep,
)
from src.domains.organizations.deps import CurrentUserDep
from src.domains.organizations.exceptions import NotAMember
from src.domains.organizations.models import Role, User
from src.domains.organizations.service import OrganizationService

router = APIRouter(tags=["connections"])

OrgId = Annotated[uuid.UUID, Query(description="The customer organisation")]


async def _optional_user(request: Request, session: SessionDep) -> User | None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return await OrganizationService(session).authenticate(key.strip())


@router.get("/xero/connect", response_model=None)
async def connect_xero(
    user: CurrentUserDep,
    org_id: OrgId,
    session: SessionDep,
    settings: SettingsDep,
    cipher: CipherDep,
    identity: IdentityClientDep,
    mode: Annotated[str, Query(pattern="^(redirect|json)$")] = "redirect",
) -> Response | AuthorizeUrl:
    """Start connecting Xero: redirect to Xero's consent page (admins and owners only)."""
    await OrganizationService(session).require_role(user, org_id, Role.ADMIN)
    url = await XeroConnectService(session, settings, cipher, identity).start(user, org_id)
    if mode == "json":
        return AuthorizeUrl(authorize_url=url)
    return RedirectResponse(url, status_code=302)


@router.get("/xero/callback", response_model=None)
async def xero_callback(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    cipher: CipherDep,
    identity: IdentityClientDep,
    state: Annotated[str, Query(min_length=1, max_length=200)],
    code: Annotated[str | None, Query(max_length=2000)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
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


@router.get("/connections")
async def list_connections(
    user: CurrentUserDep, org_id: OrgId, session: SessionDep
) -> list[ConnectionOut]:
    """The organisation's connections with their status and last sync."""
    await OrganizationService(session).require_role(user, org_id, Role.MEMBER)
    connections = await ConnectionRepository(session).list_for_org(org_id)
    return [ConnectionOut.model_validate(c) for c in connections]


@router.delete("/connections/{connection_id}", status_code=204)
async def disconnect(
    connection_id: uuid.UUID,
    user: CurrentUserDep,
    session: SessionDep,
    settings: SettingsDep,
    cipher: CipherDep,
    identity: IdentityClientDep,
    auth: XeroAuthManagerDep,
    purge: bool = False,
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
    # Running syncs are fenced off in the purge's transaction: each stops at its next page
    # instead of writing back what the purge deletes.
    ledger = LedgerRepository(session)
    await ledger.cancel_running_runs(connection.id, "The connection was disconnected.")
    if purge:
        await ledger.purge_connection(connection.id)
    return Response(status_code=204)
