"""Raw calls to Xero's identity service: token exchange and refresh, revocation, /connections."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from src.core.database import utcnow
from src.core.settings import Settings
from src.domains.external_accounting.exceptions import ProviderRejected, ProviderUnavailable

logger = logging.getLogger(__name__)


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
        try:
            response = await self.http.post(
                self.settings.xero_token_url, data=form, auth=self._auth
            )
        except httpx.HTTPError as error:
            raise ProviderUnavailable(
                f"Xero's token endpoint is unreachable ({type(error).__name__})."
            ) from error
        if response.status_code >= 500:
            raise ProviderUnavailable(f"Xero's token endpoint answered {response.status_code}.")
        try:
            body = response.json()
        except ValueError as error:
            raise ProviderUnavailable("Xero's token endpoint sent a malformed answer.") from error
        if response.status_code != 200 or "access_token" not in body:
            raise TokenEndpointError(str(body.get("error", "unknown_error")), response.status_code)
        return TokenSet(
            access_token=body["access_token"],
            refresh_token=body["refresh_token"],
            expires_at=utcnow() + timedelta(seconds=int(body.get("expires_in", 1800))),
            scope=str(body.get("scope", "")),
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
        return [
            XeroTenantConnection(
                id=item["id"],
                tenant_id=item["tenantId"],
                tenant_name=item.get("tenantName") or "",
                tenant_type=item.get("tenantType") or "ORGANISATION",
                auth_event_id=item.get("authEventId"),
            )
            for item in response.json()
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
