"""`/docs` and `/redoc` need no network beyond the service: every asset they load is ours."""

from __future__ import annotations

import re

import httpx
import pytest

ASSET_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def _references(html: str) -> list[str]:
    return re.findall(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']""", html) + re.findall(
        r"""url:\s*["']([^"']+)["']""", html
    )


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_pages_load_only_what_the_service_serves(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http://" not in html
    assert "https://" not in html
    references = _references(html)
    assert "/openapi.json" in references
    assets = [r for r in references if r.startswith("/static/")]
    assert len(assets) >= 2, references  # the script, and the stylesheet or favicon
    for reference in references:
        assert reference.startswith("/"), reference
        served = await client.get(reference)
        assert served.status_code == 200, reference
        kind = ASSET_TYPES.get(reference[reference.rfind(".") :])
        if kind is not None:
            assert kind in served.headers["content-type"], (reference, served.headers)


async def test_swagger_ui_keeps_the_key_and_calls_no_validator(client: httpx.AsyncClient) -> None:
    html = (await client.get("/docs")).text
    assert '"persistAuthorization": true' in html
    assert '"validatorUrl": null' in html


async def test_the_documented_api_declares_the_bearer_scheme(client: httpx.AsyncClient) -> None:
    """What the "Authorize" button of Swagger UI offers."""
    document = (await client.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert [s["scheme"] for s in schemes.values() if s["type"] == "http"] == ["bearer"]
