"""The OpenAPI document says what the API sends: every route declares each status it can answer
(routes added later included), errors in the one error shape, a bearer scheme on the routes that
need a key, and a description and an example for every parameter and response."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from src.core.openapi import ErrorBody
from src.core.settings import Settings
from src.domains.organizations.deps import CallerDep, current_caller
from src.main import create_app
from tests.fixtures import TEST_ENCRYPTION_KEY


@pytest.fixture(scope="module")
def spec_app() -> FastAPI:
    """The app as built for production, only to read its routes and document."""
    return create_app(
        Settings(
            environment="test", token_encryption_keys=TEST_ENCRYPTION_KEY, xero_client_id="app-id"
        )
    )


def _parameters(dependant: Dependant, kind: str) -> list[Any]:
    """The route's parameters of one kind (`query_params`...), its dependencies' included."""
    own: list[Any] = list(getattr(dependant, kind))
    return own + [p for d in dependant.dependencies for p in _parameters(d, kind)]


def _needs_api_key(dependant: Dependant) -> bool:
    return any(d.call is current_caller or _needs_api_key(d) for d in dependant.dependencies)


def _api_routes(app: FastAPI) -> list[RouteContext]:
    """Every API route as served (FastAPI keeps included routers nested in `app.routes`); the
    console's pages (HTML for people, `include_in_schema=False`) are not the API."""
    return [
        r
        for r in iter_route_contexts(app.routes)
        if isinstance(r.original_route, APIRoute) and r.original_route.include_in_schema
    ]


# A load balancer's probe answers its own status body, also when it is a 503; Xero's webhook
# receiver answers a wrong signature with an empty 401, as Xero requires.
STATUS_BODIES = {
    ("GET", "/healthz"),
    *(("POST", f"{prefix}/xero/webhooks") for prefix in ("/external-accounting", "/integrations")),
}


def _undeclared_statuses(app: FastAPI) -> list[str]:
    """Read from what each route depends on: a parameter can be refused (422), an API key can be
    missing or a stranger's (401, 403), an organisation or a path's record can be unknown (404).
    Each must be in the route's `responses=`, in the one error shape."""
    problems = []
    for route in _api_routes(app):
        query, path = (_parameters(route.dependant, k) for k in ("query_params", "path_params"))
        names = {p.alias for p in [*query, *path]}
        needed = set()
        if query or path or _parameters(route.dependant, "body_params"):
            needed.add(422)
        if _needs_api_key(route.dependant):
            needed |= {401, 403}
        if "org_id" in names or path:
            needed.add(404)
        declared = {int(status) for status in route.responses}
        label = f"{','.join(sorted(route.methods or ()))} {route.path_format}"
        if needed - declared:
            problems.append(f"{label}: undeclared {sorted(needed - declared)}")
        for status, response in route.responses.items():
            own_body = any((m, route.path_format) in STATUS_BODIES for m in route.methods or ())
            if int(status) >= 400 and response.get("model") is not ErrorBody and not own_body:
                problems.append(f"{label}: {status} is not documented as ErrorBody")
    return problems


def test_every_route_declares_the_statuses_it_can_send(spec_app: FastAPI) -> None:
    problems = _undeclared_statuses(spec_app)
    assert not problems, "\n".join(problems)


def test_a_route_added_without_its_statuses_is_caught() -> None:
    app = create_app(
        Settings(
            environment="test", token_encryption_keys=TEST_ENCRYPTION_KEY, xero_client_id="app-id"
        )
    )
    router = APIRouter()

    @router.post("/connect-sessions")
    async def start_session(caller: CallerDep, org_id: uuid.UUID) -> dict[str, str]:
        return {}

    app.include_router(router, prefix="/external-accounting")
    assert _undeclared_statuses(app) == [
        "POST /external-accounting/connect-sessions: undeclared [401, 403, 404, 422]"
    ]


def _examples_of(schema: dict[str, Any], document: dict[str, Any]) -> bool:
    if "examples" in schema or "example" in schema:
        return True
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _examples_of(document["components"]["schemas"][name], document)
    if schema.get("type") == "array":
        return _examples_of(schema["items"], document)
    return False


def test_the_document_says_what_we_send(spec_app: FastAPI) -> None:
    document = spec_app.openapi()
    assert document["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "lsk_<prefix>_<secret>",
        "description": "An API key issued by `ledgersync users create`",
    }
    assert "HTTPValidationError" not in str(document)
    secured = {
        (method, route.path_format)
        for route in _api_routes(spec_app)
        if _needs_api_key(route.dependant)
        for method in route.methods or ()
    }
    problems = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            has_security = operation.get("security") == [{"ApiKey": []}]
            if has_security != ((method.upper(), path) in secured):
                problems.append(f"{label}: security {operation.get('security')}")
            for parameter in operation.get("parameters", []):
                if not parameter.get("description"):
                    problems.append(f"{label}: parameter {parameter['name']} undescribed")
                if not _examples_of(parameter["schema"], document):
                    problems.append(f"{label}: parameter {parameter['name']} has no example")
            for status, response in operation["responses"].items():
                for media, content in response.get("content", {}).items():
                    schema = content.get("schema", {})
                    error_body = {"$ref": "#/components/schemas/ErrorBody"}
                    own_body = (method.upper(), path) in STATUS_BODIES
                    # A browser's route renders the same error as a page (text/html).
                    json_body = media == "application/json"
                    if int(status) >= 400 and json_body and schema != error_body and not own_body:
                        problems.append(f"{label}: {status} is not ErrorBody")
                    if not ("example" in content or "examples" in content) and not _examples_of(
                        schema, document
                    ):
                        problems.append(f"{label}: {status} {media} has no example")
    assert not problems, "\n".join(problems)


def test_hand_parsed_list_parameters_are_in_the_document(spec_app: FastAPI) -> None:
    paths = spec_app.openapi()["paths"]

    def names(path: str, method: str) -> set[str]:
        return {p["name"] for p in paths[path][method]["parameters"]}

    base = "/external-accounting"
    assert {"invoice_types", "invoice_types[]"} <= names(f"{base}/invoices/sync", "post")
    assert {"account_types", "account_types[]"} <= names(f"{base}/accounts/sync", "post")
    assert {"type", "type[]", "status", "status[]"} <= names(f"{base}/invoices", "get")
    assert {"type", "type[]"} <= names(f"{base}/accounts", "get")
    status = next(
        p for p in paths[f"{base}/invoices"]["get"]["parameters"] if p["name"] == "status"
    )
    assert status["schema"]["anyOf"][0]["items"]["enum"] == [
        "AUTHORISED",
        "DELETED",
        "DRAFT",
        "PAID",
        "SUBMITTED",
        "VOIDED",
    ]


@pytest.mark.parametrize("prefix", ["/external-accounting", "/integrations"])
async def test_get_on_a_sync_path_is_method_not_allowed(
    client: httpx.AsyncClient, prefix: str
) -> None:
    for path in ("invoices/sync", "accounts/sync"):
        response = await client.get(f"{prefix}/{path}")
        assert response.status_code == 405, response.text
        assert response.json()["error"] == "method_not_allowed"
        assert response.headers["allow"] == "POST"
