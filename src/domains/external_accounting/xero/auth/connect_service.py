"""Connecting Xero: the authorization-code flow with PKCE and a single-use `state`, storing one
connection per Xero tenant; listing and disconnecting connections."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import uuid
from datetime import timedelta
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession

from src.core.crypto import TokenCipher
from src.core.database import utcnow
from src.core.errors import LedgersyncError
from src.core.settings import Settings
from src.domains.external_accounting.exceptions import (
    AuthorizationDenied,
    InvalidState,
    OAuthExchangeFailed,
    StateAlreadyUsed,
    StateExpired,
    StateMismatch,
    StateTampered,
)
from src.domains.external_accounting.models import (
    Connection,
    ConnectionStatus,
    OAuthGrant,
    OAuthState,
    Provider,
)
from src.domains.external_accounting.repository import (
    ConnectionRepository,
    GrantRepository,
    OAuthStateRepository,
)
from src.domains.external_accounting.xero.auth.identity_client import (
    TokenEndpointError,
    XeroIdentityClient,
)
from src.domains.external_accounting.xero.auth.manager import XeroAuthManager
from src.domains.organizations.models import User

logger = logging.getLogger(__name__)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)  # 86 characters, inside PKCE's 43-128
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _auth_event_id(access_token: str) -> str | None:
    """Xero's access tokens are JWTs whose payload names the consent (authentication event)."""
    try:
        payload = access_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        value = claims.get("authentication_event_id")
        return str(value) if value else None
    except (IndexError, ValueError):
        return None


class XeroConnectService:
    """The connect flow and the lifecycle of connections."""

    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        cipher: TokenCipher,
        identity: XeroIdentityClient,
    ) -> None:
        self.session = session
        self.settings = settings
        self.cipher = cipher
        self.identity = identity
        self.connections = ConnectionRepository(session)
        self.grants = GrantRepository(session)
        self.states = OAuthStateRepository(session)

    async def start(self, user: User, organization_id: uuid.UUID) -> str:
        """A Xero authorize URL carrying a fresh single-use state and a PKCE challenge."""
        verifier, challenge = _pkce_pair()
        secret = secrets.token_urlsafe(32)
        state = OAuthState(
            secret_hash=_sha256(secret),
            organization_id=organization_id,
            user_id=user.id,
            code_verifier_encrypted=self.cipher.encrypt(verifier),
            expires_at=utcnow() + timedelta(seconds=self.settings.oauth_state_ttl_seconds),
        )
        await self.states.add(state)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.xero_client_id,
                "redirect_uri": self.settings.xero_redirect_uri,
                "scope": self.settings.xero_scopes,
                "state": f"{state.id.hex}.{secret}",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{self.settings.xero_authorize_url}?{query}"

    async def _consume_state(self, state_text: str, caller: User | None) -> OAuthState:
        state_id_text, _, secret = state_text.partition(".")
        try:
            state_id = uuid.UUID(hex=state_id_text)
        except ValueError:
            raise InvalidState("The state parameter is not one we issued.") from None
        state = await self.states.lock(state_id)
        if state is None or not secret:
            raise InvalidState("The state parameter is not one we issued.")
        if not hmac.compare_digest(state.secret_hash, _sha256(secret)):
            raise StateTampered("The state parameter has been altered.")
        if state.consumed_at is not None:
            raise StateAlreadyUsed("This connect link has already been used; start again.")
        if state.expires_at <= utcnow():
            raise StateExpired("This connect link has expired; start again.")
        if caller is not None and caller.id != state.user_id:
            raise StateMismatch("This connect flow was started by another user.")
        state.consumed_at = utcnow()
        # Committed at once: a replay racing this request must find the state spent even if the
        # code exchange below fails.
        await self.session.commit()
        return state

    async def complete(
        self,
        *,
        state: str,
        code: str | None,
        error: str | None,
        caller: User | None,
    ) -> list[Connection]:
        """Finish the flow Xero redirected back from: one connection per authorised tenant."""
        pending = await self._consume_state(state, caller)
        if error or not code:
            raise AuthorizationDenied(f"Xero did not grant access ({error or 'no code'}).")
        try:
            tokens = await self.identity.exchange_code(
                code, self.cipher.decrypt(pending.code_verifier_encrypted)
            )
        except TokenEndpointError as failure:
            raise OAuthExchangeFailed(
                f"Xero refused the authorization code ({failure.error})."
            ) from failure
        event = _auth_event_id(tokens.access_token)
        tenants = [
            t
            for t in await self.identity.connections(tokens.access_token)
            if event is None or t.auth_event_id in (None, event)
        ]
        grant = OAuthGrant(
            organization_id=pending.organization_id,
            provider=Provider.XERO.value,
            scopes=tokens.scope,
            auth_event_id=event,
            access_token_encrypted=self.cipher.encrypt(tokens.access_token),
            refresh_token_encrypted=self.cipher.encrypt(tokens.refresh_token),
            access_token_expires_at=tokens.expires_at,
        )
        await self.grants.add(grant)
        stored: list[Connection] = []
        replaced_grants: set[uuid.UUID] = set()
        for tenant in tenants:
            connection = await self.connections.get_by_tenant(
                pending.organization_id, Provider.XERO.value, tenant.tenant_id
            )
            if connection is None:
                connection = Connection(
                    organization_id=pending.organization_id,
                    provider=Provider.XERO.value,
                    tenant_id=tenant.tenant_id,
                )
                await self.connections.add(connection)
            elif connection.grant_id is not None and connection.grant_id != grant.id:
                replaced_grants.add(connection.grant_id)
            connection.tenant_name = tenant.tenant_name
            connection.tenant_type = tenant.tenant_type
            connection.provider_connection_id = tenant.id
            connection.grant_id = grant.id
            connection.status = ConnectionStatus.ACTIVE.value
            connection.connected_by_user_id = pending.user_id
            connection.connected_at = utcnow()
            stored.append(connection)
        await self.session.flush()
        for old in replaced_grants:
            await self.grants.delete_if_unused(old)
        logger.info(
            "xero connected",
            extra={"organization_id": str(pending.organization_id), "tenants": len(stored)},
        )
        return stored

    async def disconnect(self, connection: Connection, auth: XeroAuthManager) -> None:
        """Disconnect at Xero (best effort: a connection Xero already dropped still disconnects
        here), revoke the token set once no other tenant uses it, erase local tokens."""
        grant_id = connection.grant_id
        if connection.status == ConnectionStatus.ACTIVE.value and connection.provider_connection_id:
            try:
                token = await auth.get_access_token(connection)
                await self.identity.delete_connection(token, connection.provider_connection_id)
            except LedgersyncError as failure:
                logger.warning(
                    "could not delete the connection at Xero; disconnecting locally",
                    extra={"connection_id": str(connection.id), "error": failure.code},
                )
        connection.status = ConnectionStatus.DISCONNECTED.value
        connection.grant_id = None
        await self.session.flush()
        if grant_id is None:
            return
        grant = await self.grants.get(grant_id)
        if grant is None or await self.connections.list_for_grant(grant_id):
            return
        if grant.refresh_token_encrypted and grant.status == ConnectionStatus.ACTIVE.value:
            try:
                await self.identity.revoke(self.cipher.decrypt(grant.refresh_token_encrypted))
            except LedgersyncError as failure:
                logger.warning("could not revoke the token at Xero", extra={"error": failure.code})
        await self.grants.delete_if_unused(grant_id)
