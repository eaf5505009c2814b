"""Dependencies of the connections routes: the service, and a connection its caller administers."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Path

from src.core.deps import SessionDep
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.connections.service import ConnectionService
from src.domains.external_accounting.deps import FactoryDep
from src.domains.organizations.deps import CallerDep


def get_connection_service(session: SessionDep, factory: FactoryDep) -> ConnectionService:
    """The connections service on the request's session."""
    return ConnectionService(session, factory)


ConnectionServiceDep = Annotated[ConnectionService, Depends(get_connection_service)]


async def administered_connection(
    connection_id: Annotated[
        uuid.UUID,
        Path(description="The connection's id", examples=["2d3e4f50-6172-4839-a4b5-c6d7e8f90a1b"]),
    ],
    caller: CallerDep,
    service: ConnectionServiceDep,
) -> Connection:
    """The path's connection, if the caller is an admin of its organisation (else a 404)."""
    return await service.get_administered(caller, connection_id)


AdministeredConnection = Annotated[Connection, Depends(administered_connection)]
