"""Liveness and readiness."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import SQLAlchemyError

from src.core.deps import SessionFactoryDep
from src.domains.health.repository import HealthRepository

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """Whether the service can reach its database."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok", "database": "ok"}]})

    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unreachable"]


@router.get(
    "/healthz",
    response_model=Health,
    responses={
        503: {
            "model": Health,
            "description": "The database is unreachable",
            "content": {
                "application/json": {
                    "example": {"status": "unavailable", "database": "unreachable"}
                }
            },
        }
    },
)
async def healthz(session_factory: SessionFactoryDep) -> JSONResponse:
    """Report whether the service can reach its database."""
    try:
        async with session_factory() as session:
            await HealthRepository(session).ping()
    except (SQLAlchemyError, OSError):
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})
