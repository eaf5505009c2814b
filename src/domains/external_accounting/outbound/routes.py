"""An organisation's outbound webhook endpoints and their delivery logs (admins only)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import Response

from src.core.errors import ValidationFailed
from src.core.openapi import error_responses
from src.domains.external_accounting.outbound.deps import EndpointServiceDep
from src.domains.external_accounting.outbound.exceptions import (
    InvalidWebhookUrl,
    WebhookEndpointNotFound,
)
from src.domains.external_accounting.outbound.schemas import (
    DeliveryLog,
    WebhookEndpointCreated,
    WebhookEndpointIn,
    WebhookEndpointList,
    WebhookEndpointOut,
)
from src.domains.organizations.deps import ADMIN_ERRORS, AdminOfOrg

router = APIRouter(tags=["webhook endpoints"])

EndpointId = Annotated[
    uuid.UUID,
    Path(description="The endpoint's id", examples=["7b0c1d2e-3f40-4152-8637-48596a7b8c9d"]),
]


@router.post(
    "/webhook-endpoints",
    status_code=201,
    responses=error_responses(*ADMIN_ERRORS, InvalidWebhookUrl, ValidationFailed),
)
async def create_webhook_endpoint(
    access: AdminOfOrg,
    endpoint: Annotated[WebhookEndpointIn, Body()],
    service: EndpointServiceDep,
) -> WebhookEndpointCreated:
    """Register a receiver of events; the answer holds its signing secret, shown this once."""
    created, secret = await service.create(access.organization_id, endpoint)
    return WebhookEndpointCreated(
        **WebhookEndpointOut.model_validate(created).model_dump(), secret=secret
    )


@router.get("/webhook-endpoints", responses=error_responses(*ADMIN_ERRORS))
async def list_webhook_endpoints(
    access: AdminOfOrg, service: EndpointServiceDep
) -> WebhookEndpointList:
    """The organisation's endpoints (never their secrets)."""
    endpoints = await service.list(access.organization_id)
    return WebhookEndpointList(endpoints=[WebhookEndpointOut.model_validate(e) for e in endpoints])


@router.delete(
    "/webhook-endpoints/{endpoint_id}",
    status_code=204,
    # Another organisation's endpoint is a 404, not a 403: nothing is learnt about it.
    responses=error_responses(*ADMIN_ERRORS, WebhookEndpointNotFound),
)
async def delete_webhook_endpoint(
    access: AdminOfOrg, endpoint_id: EndpointId, service: EndpointServiceDep
) -> Response:
    """Remove the endpoint: nothing more is sent to it, and its delivery log goes with it."""
    await service.delete(access.organization_id, endpoint_id)
    return Response(status_code=204)


@router.get(
    "/webhook-endpoints/{endpoint_id}/deliveries",
    responses=error_responses(*ADMIN_ERRORS, WebhookEndpointNotFound),
)
async def list_webhook_deliveries(
    access: AdminOfOrg,
    endpoint_id: EndpointId,
    service: EndpointServiceDep,
    limit: Annotated[
        int, Query(ge=1, le=500, description="At most this many, newest first", examples=[50])
    ] = 50,
) -> DeliveryLog:
    """The endpoint's latest deliveries: each event, its status, and every attempt at it."""
    return await service.delivery_log(access.organization_id, endpoint_id, limit)
