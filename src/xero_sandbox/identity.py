"""Xero's identity service: authorization-code flow with PKCE, rotating single-use refresh tokens,
revocation, and the `/connections` API.

State lives in memory (`IdentityState`); every token is an opaque value looked up there, shaped like
Xero's JWTs (header.payload.signature) because real clients decode the payload.

Over 400 lines: it is one emulated service (authorize, token, revoke, connections) whose
endpoints share the in-memory state; the data-side modules are split by concern instead."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlparse

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from src.xero_sandbox.config import SandboxConfig
from src.xero_sandbox.render import dumps
from src.xero_sandbox.responses import JsonResponse, problem
from src.xero_sandbox.token_faults import DroppedResponse, TokenFaultPlan

router = APIRouter()

CODE_TTL_S = 300
SANDBOX_USER_ID = str(uuid.UUID(int=0x5A4DB0C5))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _xero_timestamp(moment: datetime) -> str:
    """`2019-12-07T18:46:19.5165400`: the 7-digit, zone-less format /connections uses."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0"


@dataclass
class ConnectionRecord:
    id: str
    tenant_id: str
    auth_event_id: str
    created: datetime
    updated: datetime


@dataclass
class Grant:
    """One consent (an authentication event): the tenants it covers and its token chain."""

    auth_event_id: str
    client_id: str
    scopes: str
    tenant_ids: list[str]
    revoked: bool = False


@dataclass
class RefreshRecord:
    grant_id: str
    spent_at: float | None = None
    successor: dict[str, Any] | None = None


@dataclass
class CodeRecord:
    client_id: str
    redirect_uri: str
    code_challenge: str | None
    scopes: str
    tenant_ids: list[str]
    expires_at: float


@dataclass
class AccessRecord:
    grant_id: str
    expires_at: float


@dataclass
class IdentityState:
    """Every grant, code, token and connection the identity service knows."""

    config: SandboxConfig
    grants: dict[str, Grant] = field(default_factory=dict)
    codes: dict[str, CodeRecord] = field(default_factory=dict)
    access_tokens: dict[str, AccessRecord] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshRecord] = field(default_factory=dict)
    connections: dict[str, ConnectionRecord] = field(default_factory=dict)
    token_calls: dict[str, int] = field(default_factory=dict)
    token_faults: TokenFaultPlan = field(default_factory=TokenFaultPlan)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far expires now (refresh tokens stay valid)."""
        for record in self.access_tokens.values():
            record.expires_at = 0.0

    def reset(self) -> None:
        """Forget everything."""
        for table in (
            self.grants,
            self.codes,
            self.access_tokens,
            self.refresh_tokens,
            self.connections,
            self.token_calls,
        ):
            table.clear()
        self.token_faults = TokenFaultPlan()

    # -- grants and tokens -------------------------------------------------------------------

    def create_grant(self, client_id: str, scopes: str, tenant_ids: list[str]) -> Grant:
        """Record a consent and (re)connect its tenants for the sandbox user."""
        grant = Grant(str(uuid.uuid4()), client_id, scopes, list(dict.fromkeys(tenant_ids)))
        self.grants[grant.auth_event_id] = grant
        now = datetime.now(UTC)
        for tenant_id in grant.tenant_ids:
            existing = next(
                (c for c in self.connections.values() if c.tenant_id == tenant_id), None
            )
            if existing is not None:
                existing.auth_event_id, existing.updated = grant.auth_event_id, now
            else:
                connection = ConnectionRecord(
                    str(uuid.uuid4()), tenant_id, grant.auth_event_id, now, now
                )
                self.connections[connection.id] = connection
        return grant

    def issue_tokens(self, grant: Grant, ttl_s: int | None = None) -> dict[str, Any]:
        """A fresh access token and refresh token for `grant`."""
        ttl = ttl_s or self.config.access_token_ttl_s
        now = time.time()
        header = _b64(json.dumps({"alg": "RS256", "kid": "sandbox", "typ": "JWT"}).encode())
        payload = _b64(
            json.dumps(
                {
                    "nbf": int(now),
                    "exp": int(now + ttl),
                    "iss": "https://identity.xero.com",
                    "aud": "https://identity.xero.com/resources",
                    "client_id": grant.client_id,
                    "sub": SANDBOX_USER_ID,
                    "xero_userid": SANDBOX_USER_ID,
                    "jti": secrets.token_hex(16),
                    "authentication_event_id": grant.auth_event_id,
                    "scope": grant.scopes.split(),
                }
            ).encode()
        )
        access = f"{header}.{payload}.{_b64(secrets.token_bytes(32))}"
        refresh = secrets.token_urlsafe(32)
        self.access_tokens[access] = AccessRecord(grant.auth_event_id, now + ttl)
        self.refresh_tokens[refresh] = RefreshRecord(grant.auth_event_id)
        return {
            "access_token": access,
            "expires_in": ttl,
            "token_type": "Bearer",
            "refresh_token": refresh,
            "scope": grant.scopes,
        }

    def access(self, token: str) -> tuple[Grant | None, str]:
        """The grant behind a bearer token, or None with the reason (for the 401 Detail)."""
        record = self.access_tokens.get(token)
        if record is None:
            return None, "AuthenticationUnsuccessful"
        grant = self.grants.get(record.grant_id)
        if grant is None or grant.revoked:
            return None, "AuthenticationUnsuccessful"
        if time.time() >= record.expires_at:
            expired = datetime.fromtimestamp(record.expires_at, UTC).strftime("%m/%d/%Y %H:%M:%S")
            return None, f"TokenExpired: token expired at {expired}"
        return grant, ""

    def tenant_allowed(self, token: str, tenant_id: str) -> bool:
        """Whether the token's user still has a connection to `tenant_id`."""
        grant, _ = self.access(token)
        if grant is None:
            return False
        return any(c.tenant_id == tenant_id for c in self.connections.values())

    def refresh(self, refresh_token: str, client_id: str) -> dict[str, Any] | str:
        """Rotate: spend `refresh_token` and return a new token set, or an OAuth error code."""
        record = self.refresh_tokens.get(refresh_token)
        if record is None:
            return "invalid_grant"
        grant = self.grants.get(record.grant_id)
        if grant is None or grant.revoked or grant.client_id != client_id:
            return "invalid_grant"
        if record.spent_at is not None:
            # Xero lets a client whose refresh response was lost retry the spent token for a
            # grace period and get the same new tokens; after it, the token is simply dead.
            within = time.time() - record.spent_at <= self.config.refresh_grace_s
            return record.successor if within and record.successor else "invalid_grant"
        tokens = self.issue_tokens(grant)
        record.spent_at, record.successor = time.time(), tokens
        return tokens

    def revoke(self, refresh_token: str) -> None:
        """Revoke the grant behind a refresh token and every connection it made."""
        record = self.refresh_tokens.get(refresh_token)
        if record is None:
            return
        grant = self.grants.get(record.grant_id)
        if grant is not None:
            grant.revoked = True
            for connection_id in [
                c.id for c in self.connections.values() if c.auth_event_id == grant.auth_event_id
            ]:
                del self.connections[connection_id]


def _state(request: Request) -> IdentityState:
    state: IdentityState = request.app.state.sandbox.identity
    return state


def _oauth_error(
    error: str, status_code: int = 400, description: str | None = None
) -> JsonResponse:
    body = {"error": error}
    if description:
        body["error_description"] = description
    return JsonResponse(body, status_code=status_code)


def _redirect_allowed(uri: str) -> bool:
    parsed = urlparse(uri)
    local = parsed.hostname in ("localhost", "127.0.0.1", "::1")
    return bool(parsed.netloc) and (parsed.scheme == "https" or (parsed.scheme == "http" and local))


def _bad_authorize(message: str) -> HTMLResponse:
    return HTMLResponse(
        f"<h1>Something went wrong</h1><p>{html.escape(message)}</p>", status_code=400
    )


@router.get("/identity/connect/authorize", response_model=None)
async def authorize(request: Request) -> Response:
    """The login and consent page (or, with auto-approve, straight back to the app)."""
    state = _state(request)
    params = request.query_params
    client_id = params.get("client_id", "")
    redirect_uri = params.get("redirect_uri", "")
    if client_id != state.config.client_id:
        return _bad_authorize("unauthorized_client: unknown client_id")
    if not _redirect_allowed(redirect_uri):
        return _bad_authorize("invalid redirect_uri: https is required except for localhost")
    if params.get("response_type") != "code":
        return _redirect(redirect_uri, error="unsupported_response_type", state=params.get("state"))
    challenge = params.get("code_challenge")
    if challenge and params.get("code_challenge_method") != "S256":
        return _redirect(redirect_uri, error="invalid_request", state=params.get("state"))
    scopes = params.get("scope", "")
    if not scopes.strip():
        return _redirect(redirect_uri, error="invalid_scope", state=params.get("state"))
    tenants = list(request.app.state.sandbox.store.tenants.values())
    if state.config.auto_approve:
        return _issue_code(state, params, [t.tenant_id for t in tenants])
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in params.items()
    )
    boxes = "".join(
        f'<label><input type="checkbox" name="tenant_id" value="{t.tenant_id}" checked> '
        f"{html.escape(t.name)}</label><br>"
        for t in tenants
    )
    page = (
        "<!doctype html><title>Xero sandbox: allow access</title>"
        f"<h1>Allow access to your organisations?</h1><p>{html.escape(client_id)} asks for: "
        f"{html.escape(scopes)}</p><form method=post action='/identity/connect/authorize/consent'>"
        f"{hidden}{boxes}<button name=decision value=allow>Allow access</button> "
        "<button name=decision value=deny>Cancel</button></form>"
    )
    return HTMLResponse(page)


@router.post("/identity/connect/authorize/consent", response_model=None)
async def consent(request: Request) -> Response:
    """The consent form's answer: a code for the chosen tenants, or access_denied."""
    state = _state(request)
    form = await request.form()
    params = {k: str(v) for k, v in form.items() if k not in ("tenant_id", "decision")}
    redirect_uri = params.get("redirect_uri", "")
    if params.get("client_id") != state.config.client_id or not _redirect_allowed(redirect_uri):
        return _bad_authorize("invalid consent request")
    chosen = [str(v) for v in form.getlist("tenant_id")]
    if form.get("decision") != "allow" or not chosen:
        return _redirect(redirect_uri, error="access_denied", state=params.get("state"))
    known = request.app.state.sandbox.store.tenants
    return _issue_code(state, params, [t for t in chosen if t in known])


def _issue_code(state: IdentityState, params: Any, tenant_ids: list[str]) -> RedirectResponse:
    code = secrets.token_urlsafe(24)
    state.codes[code] = CodeRecord(
        client_id=params.get("client_id"),
        redirect_uri=params.get("redirect_uri"),
        code_challenge=params.get("code_challenge") or None,
        scopes=params.get("scope", ""),
        tenant_ids=tenant_ids,
        expires_at=time.time() + CODE_TTL_S,
    )
    return _redirect(params.get("redirect_uri"), code=code, state=params.get("state"))


def _redirect(uri: str, **query: str | None) -> RedirectResponse:
    values = {k: v for k, v in query.items() if v is not None}
    separator = "&" if "?" in uri else "?"
    return RedirectResponse(f"{uri}{separator}{urlencode(values)}", status_code=302)


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str | None]:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, secret = decoded.partition(":")
            return client_id, secret
        except (ValueError, UnicodeDecodeError):
            return "", None
    return form.get("client_id", ""), form.get("client_secret")


@router.post("/connect/token", response_model=None)
async def token(request: Request) -> Response:
    """Exchange an authorization code or a refresh token for tokens."""
    state = _state(request)
    state.token_calls["total"] = state.token_calls.get("total", 0) + 1
    form = {k: str(v) for k, v in (await request.form()).items()}
    grant_type = form.get("grant_type", "")
    state.token_calls[grant_type or "missing"] = (
        state.token_calls.get(grant_type or "missing", 0) + 1
    )
    faults = state.token_faults
    if faults.settings.latency_ms:
        await asyncio.sleep(faults.settings.latency_ms / 1000)
    failure = faults.next_error()
    if failure is not None:
        response = JsonResponse({"error": "server_error"}, status_code=failure)
        if faults.settings.error_retry_after is not None:
            response.headers["Retry-After"] = faults.settings.error_retry_after
        return response
    client_id, secret = _client_credentials(request, form)
    if client_id != state.config.client_id:
        return _oauth_error("invalid_client")
    if secret is not None and not secrets.compare_digest(secret, state.config.client_secret):
        return _oauth_error("invalid_client")
    if grant_type == "authorization_code":
        return _exchange_code(state, form, secret is not None)
    if grant_type == "refresh_token":
        result = state.refresh(form.get("refresh_token", ""), client_id)
        if isinstance(result, str):
            return _oauth_error(result)
        if faults.take("lost"):
            return DroppedResponse(dumps(result), media_type="application/json")
        if faults.take("without_refresh_token"):
            return JsonResponse({k: v for k, v in result.items() if k != "refresh_token"})
        return JsonResponse(result)
    return _oauth_error("unsupported_grant_type")


def _exchange_code(state: IdentityState, form: dict[str, str], authenticated: bool) -> Response:
    record = state.codes.pop(form.get("code", ""), None)  # single use, whatever happens next
    if record is None or time.time() > record.expires_at:
        return _oauth_error("invalid_grant")
    if record.redirect_uri != form.get("redirect_uri"):
        return _oauth_error("invalid_grant", description="redirect_uri does not match")
    verifier = form.get("code_verifier")
    if record.code_challenge is not None:
        if not verifier or not 43 <= len(verifier) <= 128:
            return _oauth_error("invalid_grant", description="code_verifier is required")
        if _b64(hashlib.sha256(verifier.encode()).digest()) != record.code_challenge:
            return _oauth_error("invalid_grant", description="code_verifier does not match")
    elif not authenticated:
        return _oauth_error("invalid_client")
    grant = state.create_grant(record.client_id, record.scopes, record.tenant_ids)
    return JsonResponse(state.issue_tokens(grant))


@router.post("/connect/revocation", response_model=None)
async def revocation(request: Request) -> Response:
    """Revoke a refresh token and every connection its consent made."""
    state = _state(request)
    faults = request.app.state.sandbox.faults
    # Faults reach this endpoint only when aimed at it (`path_contains`), so faults meant for the
    # accounting API never break a disconnect by accident. Only `error` kinds apply here.
    if faults.settings.path_contains and faults.settings.path_contains in request.url.path:
        fault = faults.decide(request.url.path)
        if fault is not None and fault[0] == "error":
            return problem(fault[1], "An error occurred", "Injected fault")
    form = {k: str(v) for k, v in (await request.form()).items()}
    client_id, secret = _client_credentials(request, form)
    if client_id != state.config.client_id or (
        secret is not None and not secrets.compare_digest(secret, state.config.client_secret)
    ):
        return _oauth_error("invalid_client")
    state.revoke(form.get("token", ""))
    return Response(status_code=200)


def _bearer_grant(request: Request) -> tuple[Grant | None, Response | None]:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return None, problem(401, "Unauthorized", "AuthenticationUnsuccessful")
    grant, reason = _state(request).access(header[7:].strip())
    if grant is None:
        return None, problem(401, "Unauthorized", reason)
    return grant, None


def _connection_body(
    state: IdentityState, connection: ConnectionRecord, names: dict[str, str]
) -> dict[str, Any]:
    return {
        "id": connection.id,
        "authEventId": connection.auth_event_id,
        "tenantId": connection.tenant_id,
        "tenantType": "ORGANISATION",
        "tenantName": names.get(connection.tenant_id, ""),
        "createdDateUtc": _xero_timestamp(connection.created),
        "updatedDateUtc": _xero_timestamp(connection.updated),
    }


@router.get("/connections", response_model=None)
async def list_connections(request: Request) -> Response:
    """The tenants the token's user has connected to this app."""
    grant, error = _bearer_grant(request)
    if error is not None:
        return error
    state = _state(request)
    names = {t.tenant_id: t.name for t in request.app.state.sandbox.store.tenants.values()}
    auth_event = request.query_params.get("authEventId")
    body = [
        _connection_body(state, c, names)
        for c in state.connections.values()
        if auth_event is None or c.auth_event_id == auth_event
    ]
    return JsonResponse(body)


@router.delete("/connections/{connection_id}", response_model=None)
async def delete_connection(request: Request, connection_id: str) -> Response:
    """Disconnect one tenant."""
    grant, error = _bearer_grant(request)
    if error is not None:
        return error
    state = _state(request)
    if state.connections.pop(connection_id, None) is None:
        return problem(404, "NotFound", "The resource you're looking for cannot be found")
    return Response(status_code=204)
