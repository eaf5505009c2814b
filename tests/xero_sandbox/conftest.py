from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openapi_schema_validator import OAS30Validator, OAS31Validator

from src.xero_sandbox.server import RunningSandbox
from tests.fixtures import mint_tokens, tenant_ids

# Xero's OpenAPI specs: the team's shared copy when it sits beside the repository, otherwise the
# copy vendored with the tests (same files, see specs/SOURCE.md).
_SHARED = Path(__file__).resolve().parents[3] / "shared" / "xero-openapi"
SPECS = _SHARED if (_SHARED / "xero_accounting.yaml").exists() else Path(__file__).parent / "specs"


@lru_cache
def _spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((SPECS / name).read_text())
    return spec


def validate_schema(body: Any, schema: str, spec: str = "xero_accounting.yaml") -> None:
    """Validate `body` against `#/components/schemas/<schema>` of one of Xero's specs."""
    document = _spec(spec)
    # The webhooks spec is OpenAPI 3.1 (JSON Schema 2020-12: `const`, `oneOf` of consts).
    validator_class = OAS31Validator if document["openapi"].startswith("3.1") else OAS30Validator
    validator = validator_class(
        {"$ref": f"#/components/schemas/{schema}", "components": document["components"]}
    )
    validator.validate(body)


def schema_properties(schema: str, spec: str = "xero_accounting.yaml") -> set[str]:
    """The property names a schema declares."""
    return set(_spec(spec)["components"]["schemas"][schema]["properties"])


class XeroApi:
    """A tenant-scoped client of the sandbox's accounting API."""

    def __init__(self, sandbox: RunningSandbox, tenant: str, token: str) -> None:
        self.sandbox = sandbox
        self.tenant = tenant
        self.token = token
        self.http = httpx.Client(
            base_url=f"{sandbox.base_url}/api.xro/2.0",
            headers={"Authorization": f"Bearer {token}", "xero-tenant-id": tenant},
        )

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)


@pytest.fixture
def xero(fresh_sandbox: RunningSandbox) -> Iterator[XeroApi]:
    """An accounting API client for the first tenant of a freshly reset sandbox."""
    tenant = tenant_ids(fresh_sandbox)[0]
    tokens = mint_tokens(fresh_sandbox, [tenant])
    api = XeroApi(fresh_sandbox, tenant, tokens["access_token"])
    yield api
    api.http.close()
