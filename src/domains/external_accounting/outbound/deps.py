"""Dependencies of the webhook-endpoint routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from src.core.crypto import TokenCipher
from src.core.deps import SessionDep, SettingsDep
from src.domains.external_accounting.outbound.service import WebhookEndpointService


def get_endpoint_service(
    request: Request, session: SessionDep, settings: SettingsDep
) -> WebhookEndpointService:
    """The endpoints service on the request's session and the process's cipher."""
    cipher: TokenCipher = request.app.state.token_cipher
    return WebhookEndpointService(session, settings, cipher)


EndpointServiceDep = Annotated[WebhookEndpointService, Depends(get_endpoint_service)]
