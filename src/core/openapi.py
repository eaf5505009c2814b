"""What the OpenAPI document says about errors: the one error shape, and `responses=` built from
the typed errors a route can raise, so each route documents every status it can answer."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from src.core.errors import LedgersyncError, ValidationFailed

Responses = dict[int | str, dict[str, Any]]


class FieldError(BaseModel):
    """One refused parameter of a request that failed validation."""

    loc: list[str | int] = Field(description="Where: `query`, `path` or `header`, then the name")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error the API answers: a stable code, a sentence, and fields some codes add."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="Stable, machine-readable code, e.g. `invalid_parameter`")
    detail: str = Field(description="What went wrong and what to do, for a person")
    errors: list[FieldError] | None = Field(
        None, description="`invalid_parameter` from request validation: each refused parameter"
    )
    parameter: str | None = Field(None, description="`invalid_parameter`: the parameter refused")
    connect_url: str | None = Field(
        None, description="`reauthorisation_required`: where an admin connects Xero again"
    )
    sync_run_id: uuid.UUID | None = Field(
        None, description="`sync_in_progress`: the run that holds the lease"
    )
    retry_after_seconds: float | None = Field(
        None, description="`rate_limited`: how long to wait before trying again"
    )


# Fields some codes add to their example, so each example shows the body a caller really gets.
_EXAMPLE_EXTRAS: dict[str, dict[str, Any]] = {
    "unauthenticated": {"detail": "Send your API key as 'Authorization: Bearer <key>'."},
    "not_a_member": {"detail": "You are not a member of this organisation."},
    "insufficient_role": {"detail": "This needs the admin role or higher."},
    "organization_not_found": {
        "detail": "Organisation 6f1c2a8e-3b4d-4c5e-9f60-718293a4b5c6 does not exist."
    },
    "connection_not_found": {
        "detail": "Connection 2d3e4f50-6172-4839-a4b5-c6d7e8f90a1b does not exist."
    },
    "not_found": {"detail": "Invoice 5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d does not exist."},
    "no_active_connection": {
        "detail": "This organisation has no active accounting connection; connect Xero first."
    },
    "invalid_state": {"detail": "The state parameter is not one we issued."},
    "state_expired": {"detail": "This connect link has expired; start again."},
    "state_already_used": {"detail": "This connect link has already been used; start again."},
    "state_mismatch": {"detail": "This connect flow was started by another user."},
    "authorization_denied": {"detail": "Xero did not grant access (access_denied)."},
    ValidationFailed.code: {
        "detail": "query.limit: Input should be less than or equal to 500",
        "errors": [
            {
                "loc": ["query", "limit"],
                "msg": "Input should be less than or equal to 500",
                "type": "less_than_equal",
            }
        ],
    },
    "reauthorisation_required": {
        "detail": "The Xero connection must be authorised again by an admin.",
        "connect_url": "https://api.example.com/external-accounting/xero/connect"
        "?org_id=6f1c2a8e-3b4d-4c5e-9f60-718293a4b5c6",
    },
    "sync_in_progress": {
        "detail": "An invoices sync of this connection is already running; try again when it ends.",
        "sync_run_id": "0b9c8d7e-6f5a-4b3c-8d2e-1f0a9b8c7d6e",
    },
    "rate_limited": {
        "detail": "Too many sync requests for this organisation; try again in 12 seconds.",
        "retry_after_seconds": 12.0,
    },
}


def example_body(error: type[LedgersyncError]) -> dict[str, Any]:
    """The body `error` is rendered as, with an illustrative sentence."""
    doc = (error.__doc__ or "").strip().split("\n")[0].rstrip(".")
    detail = f"{doc}." if doc else error.code.replace("_", " ").capitalize() + "."
    return {"error": error.code, "detail": detail, **_EXAMPLE_EXTRAS.get(error.code, {})}


def error_responses(*errors: type[LedgersyncError]) -> Responses:
    """`responses=` for a route that can raise `errors`: each status they carry, in the one error
    shape, with one example per code."""
    by_status: dict[int, dict[str, type[LedgersyncError]]] = {}
    for error in errors:
        by_status.setdefault(error.status_code, {})[error.code] = error
    return {
        status: {
            "model": ErrorBody,
            "description": ", ".join(f"`{code}`" for code in sorted(codes)),
            "content": {
                "application/json": {
                    "examples": {
                        code: {"value": example_body(error)}
                        for code, error in sorted(codes.items())
                    }
                }
            },
        }
        for status, codes in sorted(by_status.items())
    }


def merge_responses(*parts: Responses) -> Responses:
    """Several `responses=` in one; the error examples of a status two parts share are combined."""
    merged: Responses = {}
    for part in parts:
        for status, response in part.items():
            if status not in merged:
                merged[status] = copy.deepcopy(response)
                continue
            ours = merged[status].get("content", {}).get("application/json", {}).get("examples")
            theirs = response.get("content", {}).get("application/json", {}).get("examples")
            if ours is None or theirs is None:
                raise ValueError(f"Two {status} responses without error examples to combine")
            ours.update(copy.deepcopy(theirs))
            merged[status]["description"] = ", ".join(f"`{code}`" for code in sorted(ours))
    return merged


def install_openapi(app: FastAPI) -> None:
    """Make the document say what the handlers send: FastAPI documents every 422 as its own
    `HTTPValidationError` (`detail` a list), while ours is the one error shape."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = FastAPI.openapi(app)
        ours = {"$ref": "#/components/schemas/ErrorBody"}
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                invalid = operation.get("responses", {}).get("422")
                if invalid is None:
                    continue
                content = invalid.setdefault("content", {}).setdefault("application/json", {})
                content["schema"] = ours
                content.setdefault(
                    "examples",
                    {ValidationFailed.code: {"value": example_body(ValidationFailed)}},
                )
                if invalid.get("description") == "Validation Error":
                    invalid["description"] = f"`{ValidationFailed.code}`"
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        if "ErrorBody" not in components:  # no route declared an error (yet)
            body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components["ErrorBody"] = body
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
