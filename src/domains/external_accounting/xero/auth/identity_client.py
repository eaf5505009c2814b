"""Raw calls to Xero's identity service: token exchange and refresh, revocation, /connections."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from src.core.database import utcnow
from src.core.http import retry_after_seconds
from src.core.settings import Settings
from src.domains.external_accounting.exceptions import ProviderRejected, ProviderUnavailable

logger = logging.getLogger(__name__)

_OAUTH_ERROR = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str
    expires_at: datetime
    scope: str


@dataclass(frozen=True)
class XeroTenantConnection:
    id: str
    tenant_id: str
    tenant_name: str
    tenant_type: str
    auth_event_id: str | None


class TokenEndpointError(Exception):
    """The token endpoint answered with an OAuth error code (e.g. `invalid_grant`)."""

    def __init__(self, error: str, status_code: int) -> None:
        super().__init__(error)
        self.error = error
        self.status_code = status_code


def _oauth_error_code(value: object) -> str:
    """Xero's OAuth error code, if it looks like one (it is echoed in our errors and logs, so
    anything else in the body stays out)."""
    if isinstance(value, str) and _OAUTH_ERROR.fullmatch(value):
        return value
    return "unknown_error"


class XeroIdentityClient:
    """Xero's OAuth 2.0 endpoints, with client authentication by HTTP Basic."""

    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        self.http = http
        self.settings = settings

    @property
    def _auth(self) -> httpx.BasicAuth:
        return httpx.BasicAuth(
            self.settings.xero_client_id, self.settings.xero_client_secret.get_secret_value()
        )

    async def exchange_code(self, code: str, code_verifier: str) -> TokenSet:
        """Trade an authorization code (and its PKCE verifier) for tokens."""
        return await self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.settings.xero_redirect_uri,
                "code_verifier": code_verifier,
            }
        )

    async def refresh(self, refresh_token: str) -> TokenSet:
        """Spend a refresh token for a new token set (the refresh token rotates)."""
        return await self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    async def _token_request(self, form: dict[str, str]) -> TokenSet:
        """One call to the token endpoint. Temporary failures (network, 5xx, 429, an answer we
        cannot read or one without a refresh token) are ProviderUnavailable; the caller decides
        whether to retry (XeroAuthManager does, within Xero's grace period)."""
        try:
            response = await self.http.post(
                self.settings.xero_token_url, data=form, auth=self._auth
            )
        except httpx.HTTPError as error:
            raise ProviderUnavailable(
                f"Xero's token endpoint is unreachable ({type(error).__name__})."
            ) from error
        if response.status_code >= 500 or response.status_code == 429:
            extra = {}
            if "retry-after" in response.headers:
                extra["retry_after_seconds"] = retry_after_seconds(response.headers["retry-after"])
            raise ProviderUnavailable(
                f"Xero's token endpoint answered {response.status_code}.", **extra
            )
        try:
            body = response.json()
        except ValueError as error:
            raise ProviderUnavailable("Xero's token endpoint sent a malformed answer.") from error
        if not isinstance(body, dict):
            raise ProviderUnavailable("Xero's token endpoint sent a malformed answer.")
        if response.status_code != 200 or "access_token" not in body:
            raise TokenEndpointError(_oauth_error_code(body.get("error")), response.status_code)
        if not body.get("refresh_token") or not isinstance(body["access_token"], str):
            # Xero rotated (or not) without telling us the new refresh token: the old one stays
            # usable for the grace period, so this is temporary, never a reason to reconnect.
            raise ProviderUnavailable("Xero's token endpoint answered without a refresh token.")
        try:
            lifetime = min(max(int(body.get("expires_in", 1800)), 0), 86_400)
        except (TypeError, ValueError):
            lifetime = 1800
        return TokenSet(
            access_token=body["access_token"],
            refresh_token=str(body["refresh_token"]),
            expires_at=utcnow() + timedelta(seconds=lifetime),
            scope=str(body.get("scope", ""))[:1000],
        )

    async def revoke(self, refresh_token: str) -> None:
        """Revoke a refresh token (and every connection its consent made)."""
        try:
            response = await self.http.post(
                self.settings.xero_revocation_url, data={"token": refresh_token}, auth=self._auth
            )
        except httpx.HTTPError as error:
            raise ProviderUnavailable("Xero's revocation endpoint is unreachable.") from error
        if response.status_code != 200:
            raise ProviderRejected(f"Xero refused to revoke the token ({response.status_code}).")

    async def connections(self, access_token: str) -> list[XeroTenantConnection]:
        """The tenants this access token's user has connected."""
        try:
            response = await self.http.get(
                self.settings.xero_connections_url,
                headers={"Authorization": f"Bearer {access_token}"},
            )
        except httpx.HTTPError as error:
            raise ProviderUnavailable("Xero's connections endpoint is unreachable.") from error
        if response.status_code != 200:
            raise ProviderRejected(f"Xero's connections endpoint answered {response.status_code}.")
        try:
            items = response.json()
        except ValueError as error:
            raise ProviderUnavailable(
                "Xero's connections endpoint sent a malformed answer."
            ) from error
        if not isinstance(items, list) or not all(
            isinstance(item, dict) and "id" in item and "tenantId" in item for item in items
        ):
            raise ProviderUnavailable("Xero's connections endpoint sent a malformed answer.")
        return [
            XeroTenantConnection(
                id=item["id"],
                tenant_id=item["tenantId"],
                tenant_name=item.get("tenantName") or "",
                tenant_type=item.get("tenantType") or "ORGANISATION",
                auth_event_id=item.get("authEventId"),
            )
            for item in items
        ]

    async def delete_connection(self, access_token: str, connection_id: str) -> None:
        """Disconnect one tenant (404 means it is already gone)."""
        try:
            response = await self.http.delete(
                f"{self.settings.xero_connections_url.rstrip('/')}/{connection_id}",
                headers={"Authorization": f"Bearer {access_token}"},
            )
        except httpx.HTTPError as error:
            raise ProviderUnavailable("Xero's connections endpoint is unreachable.") from error
        if response.status_code not in (204, 404):
            raise ProviderRejected(
                f"Xero refused to delete the connection ({response.status_code})."
            )
