"""The reconciliation sweep on demand (admins): 202 with the queued runs, like a background sync."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from src.core.deps import SessionDep
from src.core.openapi import error_responses, merge_responses
from src.domains.external_accounting.deps import FactoryDep, JobAppDep
from src.domains.external_accounting.exceptions import (
    ConnectionNotFound,
    NoActiveConnection,
    ReauthorisationRequired,
    SyncInProgress,
)
from src.domains.external_accounting.ledger.schemas import (
    QUEUED_SYNC_RUNS_EXAMPLE,
    SYNC_RUN_EXAMPLE,
    QueuedSyncRun,
    QueuedSyncRuns,
)
from src.domains.external_accounting.reconciliation.service import ReconcileService
from src.domains.organizations.deps import ADMIN_ERRORS, AdminOfOrg

router = APIRouter(tags=["sync"])

RECONCILE_RESPONSES = merge_responses(
    {
        202: {
            "description": "The runs queued (or already under way): per connection an accounts "
            "run and an invoices run, mode `reconcile`; follow each at `GET /sync-runs/{id}`",
            "headers": {
                "Location": {
                    "description": "The first run, `/external-accounting/sync-runs/{id}`",
                    "schema": {"type": "string"},
                    "example": f"/external-accounting/sync-runs/{SYNC_RUN_EXAMPLE['id']}",
                }
            },
            "content": {"application/json": {"example": QUEUED_SYNC_RUNS_EXAMPLE}},
        }
    },
    error_responses(
        *ADMIN_ERRORS,
        ConnectionNotFound,
        NoActiveConnection,
        ReauthorisationRequired,
        SyncInProgress,  # another invoice sync of a connection is queued or running
    ),
)


@router.post(
    "/reconcile",
    status_code=202,
    response_model=QueuedSyncRuns,
    responses=RECONCILE_RESPONSES,
)
async def reconcile(
    request: Request,
    access: AdminOfOrg,
    session: SessionDep,
    factory: FactoryDep,
    job_app: JobAppDep,
    connection_id: Annotated[
        uuid.UUID | None,
        Query(
            description="Only this connection (one of the organisation's)",
            examples=["2d3e4f50-6172-4839-a4b5-c6d7e8f90a1b"],
        ),
    ] = None,
) -> JSONResponse:
    """Queue a reconciliation sweep: deleted accounts, and invoices edited at Xero without a
    new UpdatedDateUTC (open ones, and those dated recently), corrected at a bounded number of
    calls. 202 at once with the queued runs."""
    runs = await ReconcileService(session, factory).queue(
        access.organization_id, job_app, connection_id=connection_id
    )
    body = QueuedSyncRuns(sync_runs=[QueuedSyncRun.model_validate(run) for run in runs])
    # Under the prefix this request came through (`/external-accounting` or `/integrations`).
    prefix = request.url.path.rsplit("/", 1)[0]
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=202,
        headers={"Location": f"{prefix}/sync-runs/{runs[0].id}"},
    )
