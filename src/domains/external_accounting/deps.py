"""Dependencies shared by the external-accounting routes: the process's IntegrationFactory."""

from __future__ import annotations

from typing import Annotated

import procrastinate
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


def get_job_app(request: Request) -> procrastinate.App:
    """The process's job queue (`serve_jobs` in the app's lifespan)."""
    job_app: procrastinate.App = request.app.state.job_app
    return job_app


JobAppDep = Annotated[procrastinate.App, Depends(get_job_app)]
