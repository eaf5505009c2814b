"""Managing an organisation's connections, whatever their provider: list and disconnect."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from src.core.errors import ValidationFailed
from src.core.openapi import error_responses
from src.domains.external_accounting.connections.deps import (
    AdministeredConnection,
    ConnectionServiceDep,
)
from src.domains.external_accounting.connections.schemas import ConnectionOut, ConnectionUsageOut
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


@router.get(
    "/connections/{connection_id}/usage",
    # Another organisation's connection is a 404, not a 403: nothing is learnt about it.
    responses=error_responses(*MEMBER_ERRORS, ConnectionNotFound),
)
async def connection_usage(
    access: MemberOfOrg,
    connection_id: Annotated[
        uuid.UUID,
        Path(description="The connection's id", examples=["2d3e4f50-6172-4839-a4b5-c6d7e8f90a1b"]),
    ],
    service: ConnectionServiceDep,
    days: Annotated[
        int, Query(ge=1, le=366, description="UTC days to show, today included", examples=[30])
    ] = 30,
) -> ConnectionUsageOut:
    """Calls to Xero's accounting API and their response bytes per UTC day, and this month's
    totals (Xero meters API egress per month)."""
    return await service.usage(access.organization_id, connection_id, days=days)


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
