"""Managing an organisation's connections, whatever their provider: list and disconnect."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from src.core.errors import ValidationFailed
from src.core.openapi import error_responses
from src.domains.external_accounting.connections.deps import (
    AdministeredConnection,
    ConnectionServiceDep,
)
from src.domains.external_accounting.connections.schemas import ConnectionOut
from src.domains.external_accounting.exceptions import ConnectionNotFound
from src.domains.organizations.deps import MEMBER_ERRORS, MemberOfOrg
from src.domains.organizations.exceptions import InsufficientRole, InvalidApiKey

router = APIRouter(tags=["connections"])


@router.get("/connections", responses=error_responses(*MEMBER_ERRORS))
async def list_connections(
    access: MemberOfOrg, service: ConnectionServiceDep
) -> list[ConnectionOut]:
    """The organisation's connections with their status and last sync."""
    connections = await service.list(access.organization_id)
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
    connection: AdministeredConnection,
    service: ConnectionServiceDep,
    purge: Annotated[
        bool,
        Query(
            description="Also delete the connection's synced invoices and accounts",
            examples=[False],
        ),
    ] = False,
) -> Response:
    """Disconnect at Xero and erase its tokens here; synced data is kept unless `purge=true`."""
    await service.disconnect(connection, purge=purge)
    return Response(status_code=204)
