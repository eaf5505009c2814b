"""The OAuth 2.0 flow, token rotation, revocation and /connections, over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from src.xero_sandbox.server import RunningSandbox
from tests.fixtures import SANDBOX_CONFIG, mint_tokens, sandbox_stats, tenant_ids
from tests.xero_sandbox.conftest import validate_schema

REDIRECT = "http://localhost:8000/callback"
BASIC = (SANDBOX_CONFIG.client_id, SANDBOX_CONFIG.client_secret)


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return verifier, challenge.decode()


def _authorize(sandbox: RunningSandbox, challenge: str, **overrides: str) -> httpx.Response:
    params = {
        "response_type": "code",
        "client_id": SANDBOX_CONFIG.client_id,
        "redirect_uri": REDIRECT,
        "scope": "offline_access accounting.invoices.read",
        "state": "xyz",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **overrides,
    }
    return httpx.get(f"{sandbox.base_url}/identity/connect/authorize", params=params)


def _code(response: httpx.Response) -> str:
    assert response.status_code == 302, response.text
    query = parse_qs(urlparse(response.headers["location"]).query)
    assert query["state"] == ["xyz"]
    return query["code"][0]


def _token(
    sandbox: RunningSandbox, auth: tuple[str, str] | None = BASIC, **form: str
) -> httpx.Response:
    return httpx.post(f"{sandbox.base_url}/connect/token", data=form, auth=auth)


def test_code_flow_with_pkce_issues_rotating_tokens(fresh_sandbox: RunningSandbox) -> None:
    verifier, challenge = _pkce()
    code = _code(_authorize(fresh_sandbox, challenge))
    response = _token(
        fresh_sandbox,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )
    assert response.status_code == 200
    tokens = response.json()
    assert tokens["expires_in"] == 1800
    assert tokens["token_type"] == "Bearer"
    # The code is single use.
    again = _token(
        fresh_sandbox,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )
    assert again.json() == {"error": "invalid_grant"}

    refreshed = _token(
        fresh_sandbox, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert refreshed.status_code == 200
    assert refreshed.json()["refresh_token"] != tokens["refresh_token"]
    # Past Xero's 30-minute grace period a spent refresh token is dead.
    record = fresh_sandbox.runtime.identity.refresh_tokens[tokens["refresh_token"]]
    record.spent_at = (record.spent_at or 0) - fresh_sandbox.runtime.config.refresh_grace_s - 1
    spent = _token(fresh_sandbox, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert spent.status_code == 400
    assert spent.json() == {"error": "invalid_grant"}
    stats = sandbox_stats(fresh_sandbox)
    assert stats["token_calls"]["refresh_token"] == 2


def test_consent_page_lets_the_user_pick_tenants(fresh_sandbox: RunningSandbox) -> None:
    fresh_sandbox.runtime.config.auto_approve = False
    try:
        _, challenge = _pkce()
        page = _authorize(fresh_sandbox, challenge)
        assert page.status_code == 200
        assert "Allow access" in page.text
        first, second = tenant_ids(fresh_sandbox)
        form = {**dict(parse_qs(urlparse(str(page.request.url)).query, keep_blank_values=True))}
        fields = {k: v[0] for k, v in form.items()}
        answer = httpx.post(
            f"{fresh_sandbox.base_url}/identity/connect/authorize/consent",
            data={**fields, "tenant_id": [second], "decision": "allow"},
        )
        assert answer.status_code == 302
        denied = httpx.post(
            f"{fresh_sandbox.base_url}/identity/connect/authorize/consent",
            data={**fields, "decision": "deny"},
        )
        assert "error=access_denied" in denied.headers["location"]
    finally:
        fresh_sandbox.runtime.config.auto_approve = True
    assert fresh_sandbox.runtime.identity.codes[_code(answer)].tenant_ids == [second]
    assert first != second


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_verifier": "x" * 50}, "invalid_grant"),
        ({"redirect_uri": "http://localhost:9999/other"}, "invalid_grant"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
    ],
)
def test_token_endpoint_refuses_bad_exchanges(
    fresh_sandbox: RunningSandbox, change: dict[str, str], error: str
) -> None:
    verifier, challenge = _pkce()
    code = _code(_authorize(fresh_sandbox, challenge))
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        **change,
    }
    response = _token(fresh_sandbox, BASIC, **form)
    assert response.status_code == 400
    assert response.json()["error"] == error


def test_wrong_client_secret_is_invalid_client(fresh_sandbox: RunningSandbox) -> None:
    response = _token(
        fresh_sandbox,
        auth=(SANDBOX_CONFIG.client_id, "wrong"),
        grant_type="refresh_token",
        refresh_token="x",
    )
    assert response.json() == {"error": "invalid_client"}


def test_authorize_refuses_unknown_client_and_plain_http_redirects(
    fresh_sandbox: RunningSandbox,
) -> None:
    _, challenge = _pkce()
    assert _authorize(fresh_sandbox, challenge, client_id="nope").status_code == 400
    assert (
        _authorize(fresh_sandbox, challenge, redirect_uri="http://example.com/cb").status_code
        == 400
    )


def test_refresh_grace_period_returns_the_same_tokens(fresh_sandbox: RunningSandbox) -> None:
    # Like Xero, by default: the spent token may be retried for 30 minutes.
    assert fresh_sandbox.runtime.config.refresh_grace_s == 1800
    tokens = mint_tokens(fresh_sandbox)
    first = _token(fresh_sandbox, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    retry = _token(fresh_sandbox, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert retry.json() == first.json()


def test_expired_access_token_gives_token_expired(fresh_sandbox: RunningSandbox) -> None:
    tenant = tenant_ids(fresh_sandbox)[0]
    tokens = mint_tokens(fresh_sandbox, [tenant], expires_in=1)
    record = fresh_sandbox.runtime.identity.access_tokens[tokens["access_token"]]
    record.expires_at -= 5
    response = httpx.get(
        f"{fresh_sandbox.base_url}/api.xro/2.0/Invoices",
        headers={"Authorization": f"Bearer {tokens['access_token']}", "xero-tenant-id": tenant},
    )
    assert response.status_code == 401
    assert response.json()["Detail"].startswith("TokenExpired: token expired at")


def test_revocation_and_disconnect_cut_access(fresh_sandbox: RunningSandbox) -> None:
    first, second = tenant_ids(fresh_sandbox)
    tokens = mint_tokens(fresh_sandbox)
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    connections = httpx.get(f"{fresh_sandbox.base_url}/connections", headers=bearer).json()
    target = next(c for c in connections if c["tenantId"] == second)
    deleted = httpx.delete(f"{fresh_sandbox.base_url}/connections/{target['id']}", headers=bearer)
    assert deleted.status_code == 204
    forbidden = httpx.get(
        f"{fresh_sandbox.base_url}/api.xro/2.0/Accounts",
        headers={**bearer, "xero-tenant-id": second},
    )
    assert forbidden.status_code == 403
    assert forbidden.json()["Detail"] == "AuthenticationUnsuccessful"
    assert (
        httpx.delete(
            f"{fresh_sandbox.base_url}/connections/{target['id']}", headers=bearer
        ).status_code
        == 404
    )

    revoked = httpx.post(
        f"{fresh_sandbox.base_url}/connect/revocation",
        data={"token": tokens["refresh_token"]},
        auth=BASIC,
    )
    assert revoked.status_code == 200
    after = httpx.get(
        f"{fresh_sandbox.base_url}/api.xro/2.0/Accounts",
        headers={**bearer, "xero-tenant-id": first},
    )
    assert after.status_code == 401
    refresh = _token(
        fresh_sandbox, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert refresh.json() == {"error": "invalid_grant"}


def test_accounting_calls_need_a_bearer_token_and_a_tenant(fresh_sandbox: RunningSandbox) -> None:
    url = f"{fresh_sandbox.base_url}/api.xro/2.0/Invoices"
    assert httpx.get(url).status_code == 401
    tokens = mint_tokens(fresh_sandbox)
    response = httpx.get(url, headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert response.status_code == 403


def test_connections_match_the_identity_schema(fresh_sandbox: RunningSandbox) -> None:
    tokens = mint_tokens(fresh_sandbox)
    response = httpx.get(
        f"{fresh_sandbox.base_url}/connections",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert response.status_code == 200
    connections = response.json()
    assert len(connections) == 2
    for connection in connections:
        validate_schema(connection, "Connection", spec="xero-identity.yaml")
        assert connection["tenantType"] == "ORGANISATION"
        created = datetime.fromisoformat(connection["createdDateUtc"][:26])
        assert abs(created.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds() < 60
