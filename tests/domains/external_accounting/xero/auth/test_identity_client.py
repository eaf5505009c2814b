"""What the identity server's error answers may carry into our errors: an OAuth error code only,
a clamped Retry-After; and no answer, however odd, crashes the client."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from src.core.http import MAX_RETRY_AFTER_SECONDS
from src.core.settings import Settings
from src.domains.external_accounting.exceptions import ProviderUnavailable
from src.domains.external_accounting.xero.auth.identity_client import (
    TokenEndpointError,
    XeroIdentityClient,
)
from tests.domains.external_accounting.xero.mocked_xero import scripted_handler


def _identity(*responses: httpx.Response) -> XeroIdentityClient:
    handler, _ = scripted_handler(*responses)
    return XeroIdentityClient(
        httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        Settings(xero_token_url="https://identity.xero.test/connect/token"),
    )


@pytest.mark.parametrize("body", [[], "text", 7, None])
async def test_a_token_endpoint_body_that_is_not_an_object_is_temporary(body: Any) -> None:
    identity = _identity(httpx.Response(400, json=body))
    with pytest.raises(ProviderUnavailable, match="malformed"):
        await identity.refresh("r")


async def test_a_200_without_a_refresh_token_is_temporary_not_a_crash() -> None:
    identity = _identity(
        httpx.Response(200, json={"access_token": "a", "expires_in": 1800, "token_type": "Bearer"})
    )
    with pytest.raises(ProviderUnavailable, match="without a refresh token"):
        await identity.refresh("r")


async def test_only_an_oauth_error_code_is_kept_from_the_token_endpoint() -> None:
    identity = _identity(
        httpx.Response(400, json={"error": "<b>" + "x" * 5000, "error_description": "secret"})
    )
    with pytest.raises(TokenEndpointError) as raised:
        await identity.refresh("r")
    assert raised.value.error == "unknown_error"
    identity = _identity(httpx.Response(400, json={"error": "invalid_grant"}))
    with pytest.raises(TokenEndpointError) as raised:
        await identity.refresh("r")
    assert raised.value.error == "invalid_grant"


@pytest.mark.parametrize("retry_after", ["1e308", "inf", "nan", "99999999999999999999"])
async def test_the_token_endpoints_retry_after_is_clamped(retry_after: str) -> None:
    identity = _identity(httpx.Response(429, headers={"Retry-After": retry_after}))
    with pytest.raises(ProviderUnavailable) as raised:
        await identity.refresh("r")
    assert 0 <= raised.value.extra["retry_after_seconds"] <= MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize("body", [{"id": "x"}, [1], [{"tenantId": "t"}], "x"])
async def test_a_malformed_connections_answer_is_temporary(body: Any) -> None:
    identity = _identity(httpx.Response(200, json=body))
    with pytest.raises(ProviderUnavailable, match="malformed"):
        await identity.connections("a")
