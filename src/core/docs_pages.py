"""`/docs` (Swagger UI) and `/redoc` (ReDoc) from assets shipped in the package: FastAPI's
defaults load both from a CDN (and a favicon and fonts from elsewhere), so without internet
they were blank pages. The assets and their licences are in `src/core/static/docs/`."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).parent / "static" / "docs"
ASSETS_PATH = "/static/docs"


def install_docs(app: FastAPI) -> None:
    """Serve the API's documentation pages; create the app with `docs_url=None,
    redoc_url=None` so FastAPI's CDN-backed pages are not served as well."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    title = app.title

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} — API",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            # "Authorize" once: the key stays in the browser's storage across reloads.
            swagger_ui_parameters={
                "persistAuthorization": True,
                "displayRequestDuration": True,
                # Not Swagger's online validator: no call leaves the service.
                "validatorUrl": None,
            },
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} — API reference",
            redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            with_google_fonts=False,
        )
