"""The one place errors become HTTP responses."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from src.core.errors import LedgersyncError, MethodNotAllowed, NotFound, ValidationFailed

logger = logging.getLogger(__name__)


def _describe(error: dict[str, object]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")  # type: ignore[attr-defined]
    return f"{location}: {error.get('msg')}" if location else str(error.get("msg"))


def install_exception_handlers(app: FastAPI) -> None:
    """Render typed errors, validation errors and stray HTTP errors as `{"error", "detail"}`."""

    @app.exception_handler(LedgersyncError)
    async def _ledgersync_error(_request: Request, exc: LedgersyncError) -> JSONResponse:
        headers: dict[str, str] | None = getattr(exc, "headers", None)  # e.g. Retry-After
        return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        detail = "; ".join(_describe(e) for e in errors)
        return JSONResponse(
            {"error": ValidationFailed.code, "detail": detail, "errors": errors},
            status_code=ValidationFailed.status_code,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {
            NotFound.status_code: NotFound.code,
            MethodNotAllowed.status_code: MethodNotAllowed.code,
        }
        code = codes.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": code, "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", extra={"error_type": type(exc).__name__})
        return JSONResponse(
            {"error": "internal_error", "detail": "An unexpected error occurred."}, status_code=500
        )
