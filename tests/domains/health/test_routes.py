from __future__ import annotations

import httpx
from cryptography.fernet import Fernet

from src.core.settings import Settings
from tests.fixtures import app_client, running_app


async def test_healthz_reports_database_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


async def test_healthz_reports_unreachable_database() -> None:
    settings = Settings(
        database_url="postgresql://nobody@127.0.0.1:1/none",
        environment="test",
        token_encryption_keys=Fernet.generate_key().decode(),
        xero_client_id="app-id",  # outside development the service refuses to start without it
    )
    async with running_app(settings) as app, app_client(app) as client:
        response = await client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"


async def test_unknown_route_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
