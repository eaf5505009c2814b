"""Dependencies shared by the external-accounting routes: the process's IntegrationFactory."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from src.domains.external_accounting.base.factory import IntegrationFactory


def get_factory(request: Request) -> IntegrationFactory:
    """Provider services built on the process's shared client, token manager and throttle."""
    state = request.app.state
    return IntegrationFactory(
        state.settings,
        state.session_factory,
        state.http_client,
        state.xero_auth_manager,
        state.xero_throttle,
        cipher=state.token_cipher,
    )


FactoryDep = Annotated[IntegrationFactory, Depends(get_factory)]
