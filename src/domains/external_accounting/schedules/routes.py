"""A connection's sync schedule: read by members, replaced by admins."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Path

from src.core.openapi import error_responses
from src.domains.external_accounting.exceptions import ConnectionNotFound
from src.domains.external_accounting.schedules.deps import ScheduleServiceDep
from src.domains.external_accounting.schedules.schemas import ScheduleIn, ScheduleOut
from src.domains.organizations.deps import ADMIN_ERRORS, MEMBER_ERRORS, AdminOfOrg, MemberOfOrg

router = APIRouter(tags=["schedules"])

ConnectionId = Annotated[
    uuid.UUID,
    Path(description="The connection's id", examples=["2d3e4f50-6172-4839-a4b5-c6d7e8f90a1b"]),
]


@router.get(
    "/connections/{connection_id}/schedule",
    # Another organisation's connection is a 404, not a 403: nothing is learnt about it.
    responses=error_responses(*MEMBER_ERRORS, ConnectionNotFound),
)
async def get_schedule(
    access: MemberOfOrg, connection_id: ConnectionId, service: ScheduleServiceDep
) -> ScheduleOut:
    """How often the connection is synced without anyone asking, and its last daily budget."""
    connection = await service.connection(access.organization_id, connection_id)
    return await service.get(connection)


@router.put(
    "/connections/{connection_id}/schedule",
    responses=error_responses(*ADMIN_ERRORS, ConnectionNotFound),
)
async def put_schedule(
    access: AdminOfOrg,
    connection_id: ConnectionId,
    schedule: Annotated[ScheduleIn, Body()],
    service: ScheduleServiceDep,
) -> ScheduleOut:
    """Replace the connection's schedule: intervals (null: the defaults) and `enabled`."""
    connection = await service.connection(access.organization_id, connection_id)
    return await service.replace(connection, schedule)
