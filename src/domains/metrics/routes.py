"""`/metrics` in Prometheus's text format: unauthenticated like /healthz (scrapers send no API
key), left out of the app with `METRICS_ENABLED=false`, and not in the OpenAPI document (it is
not the API)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from src.core.deps import SessionFactoryDep
from src.domains.external_accounting.deps import JobAppDep
from src.domains.metrics.service import render_metrics

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(session_factory: SessionFactoryDep, job_app: JobAppDep) -> Response:
    """This process's metrics and the job queue's depth and latency."""
    body = await render_metrics(session_factory, job_app)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
