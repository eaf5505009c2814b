"""Connecting Xero: the authorisation-code flow with PKCE and a single-use `state`, storing one
connection per Xero tenant (disconnecting is `disconnect_service.py`'s).

A state is bound to whoever started the flow: a connect session's state to the browser that
opened the link (a cookie), an API-started state to the API key that started it. A Xero
organisation is held by one ledgersync organisation at a time: Xero keeps one connection per
Xero user and tenant, so a second holder would share, and could delete or revoke, the first's.

Just over 400 lines: the state's binding, its single use and the consent's storage are one
security argument, easier to check read together than split across modules."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.crypto import TokenCipher
from src.core.database import utcnow
from src.core.settings import Settings
from src.domains.external_accounting.connections.models import (
    Connection,
    ConnectionStatus,
    OAuthGrant,
    OAuthState,
    Provider,
)
from src.domains.external_accounting.connections.repository import (
    ConnectionRepository,
    ConsentTenantRepository,
    GrantRepository,
    OAuthStateRepository,
)
from src.domains.external_accounting.exceptions import (
    AuthorisationDenied,
    ConnectionNotFound,
    ConnectLinkNotFound,
    ConnectLinkUsed,
    InvalidState,
    OAuthExchangeFailed,
    StateAlreadyUsed,
    StateExpired,
    StateMismatch,
    StateNotBound,
    StateTampered,
    TenantHeldByAnotherOrganization,
)
from src.domains.external_accounting.xero.auth.identity_client import (
    TokenEndpointError,
    XeroIdentityClient,
    XeroTenantConnection,
)
from src.domains.external_accounting.xero.auth.revocations import (
    RevocationReason,
    TokenSetRetirement,
)
from src.domains.organizations.models import User
from src.domains.organizations.repository import OrganizationRepository
from src.domains.organizations.service import ApiCaller

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


def _cookie_name(state_id: uuid.UUID) -> str:
    """The cookie that binds the state `state_id` to the browser that opened its connect link."""
    return f"ledgersync_connect_{state_id.hex}"


def connect_cookie_name(state_text: str) -> str | None:
    """The binding cookie of the state `state_text` names (None if malformed)."""
    try:
        return _cookie_name(uuid.UUID(hex=state_text.partition(".")[0]))
    except ValueError:
        return None


@dataclass(frozen=True)
class ConnectLink:
    """A connect link for a person to open in a browser."""

    url: str
    expires_at: datetime


@dataclass(frozen=True)
class OpenedLink:
    """Where the browser that opened a connect link goes, and the cookie that binds it."""

    authorize_url: str
    cookie_name: str
    cookie_value: str
    max_age: int


@dataclass(frozen=True)
class RefusedTenant:
    tenant_id: str
    tenant_name: str
    error: str
    detail: str


@dataclass
class ConnectOutcome:
    """What a callback stored, and what it refused."""

    organization_id: uuid.UUID
    organization_name: str
    connections: list[Connection] = field(default_factory=list)
    refused: list[RefusedTenant] = field(default_factory=list)


def _held_elsewhere_detail(names: Iterable[str]) -> str:
    listed = ", ".join(names)
    return (
        f"{listed} is already connected to another ledgersync organisation, so it was not "
        "connected here; an admin there must disconnect it first."
    )


class XeroConnectService:
    """The connect flow: start it, connect links, and the callback that stores the consent."""

    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        cipher: TokenCipher,
        identity: XeroIdentityClient,
        *,
        session_factory: async_sessionmaker[AsyncSession],
    ) -> None:
        self.session = session
        self.settings = settings
        self.cipher = cipher
        self.identity = identity
        self.connections = ConnectionRepository(session)
        self.grants = GrantRepository(session)
        self.states = OAuthStateRepository(session)
        self.consent_tenants = ConsentTenantRepository(session)
        self.retirement = TokenSetRetirement(session, settings, cipher, identity, session_factory)

    async def start(self, user: User, organization_id: uuid.UUID) -> str:
        """A Xero authorize URL carrying a fresh single-use state and a PKCE challenge (the API
        flow: the callback must carry the same user's API key)."""
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
        return self._authorize_url(state, secret, challenge)

    def _authorize_url(self, state: OAuthState, secret: str, challenge: str) -> str:
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

    async def create_link(self, user: User, organization_id: uuid.UUID) -> ConnectLink:
        """A single-use connect link: whoever opens it in a browser is sent to Xero, and only
        that browser can bring the consent back."""
        link_secret = secrets.token_urlsafe(32)
        state = OAuthState(
            # Replaced when the link is opened: no authorize URL exists before then.
            secret_hash=_sha256(secrets.token_urlsafe(32)),
            organization_id=organization_id,
            user_id=user.id,
            code_verifier_encrypted=self.cipher.encrypt(secrets.token_urlsafe(64)),
            expires_at=utcnow() + timedelta(seconds=self.settings.connect_session_ttl_seconds),
            link_secret_hash=_sha256(link_secret),
        )
        await self.states.add(state)
        base = self.settings.public_base_url.rstrip("/")
        url = f"{base}/external-accounting/connect-sessions/{state.id.hex}/open?" + urlencode(
            {"secret": link_secret}
        )
        return ConnectLink(url=url, expires_at=state.expires_at)

    async def open_link(self, session_id: str, link_secret: str) -> OpenedLink:
        """Bind the link's state to this browser (once) and build its authorize URL."""
        try:
            state_id = uuid.UUID(hex=session_id)
        except ValueError:
            raise ConnectLinkNotFound("This connect link is not one we issued.") from None
        state = await self.states.get(state_id)
        if state is None or state.link_secret_hash is None:
            raise ConnectLinkNotFound("This connect link is not one we issued.")
        if not hmac.compare_digest(state.link_secret_hash, _sha256(link_secret)):
            raise StateTampered("This connect link has been altered; open the link as you got it.")
        now = utcnow()
        if state.link_opened_at is not None:
            raise ConnectLinkUsed("This connect link has already been opened; ask for a new one.")
        if state.expires_at <= now:
            raise StateExpired("This connect link has expired; ask an admin for a new one.")
        verifier, challenge = _pkce_pair()
        secret, cookie = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        ttl = self.settings.oauth_state_ttl_seconds
        if not await self.states.open_link(
            state.id,
            now=now,
            secret_hash=_sha256(secret),
            browser_binding_hash=_sha256(cookie),
            code_verifier_encrypted=self.cipher.encrypt(verifier),
            expires_at=now + timedelta(seconds=ttl),
        ):
            raise ConnectLinkUsed("This connect link has already been opened; ask for a new one.")
        return OpenedLink(
            authorize_url=self._authorize_url(state, secret, challenge),
            cookie_name=_cookie_name(state.id),
            cookie_value=cookie,
            max_age=ttl,
        )

    def _check_binding(
        self, state: OAuthState, caller: ApiCaller | None, cookies: Mapping[str, str]
    ) -> None:
        """Only the browser (or API key) that started the flow may finish it."""
        if state.link_secret_hash is not None:
            cookie = cookies.get(_cookie_name(state.id), "")
            if (
                not cookie
                or state.browser_binding_hash is None
                or not hmac.compare_digest(state.browser_binding_hash, _sha256(cookie))
            ):
                raise StateNotBound(
                    "This Xero consent did not come back to the browser that opened the connect "
                    "link; open the link yourself, in this browser, or ask an admin for a new one."
                )
            return
        if caller is None:
            raise StateNotBound(
                "This connect flow was started through the API: finish it with the API key that "
                "started it, or connect from a browser with a connect link "
                "(POST /external-accounting/connect-sessions)."
            )
        if caller.user.id != state.user_id:
            raise StateMismatch("This connect flow was started by another user.")
        if caller.organization_id != state.organization_id:
            # The same user's key for another organisation may not act for this one.
            raise StateMismatch("This connect flow was started for another organisation.")

    async def _consume_state(
        self, state_text: str, caller: ApiCaller | None, cookies: Mapping[str, str]
    ) -> OAuthState:
        state_id_text, _, secret = state_text.partition(".")
        try:
            state_id = uuid.UUID(hex=state_id_text)
        except ValueError:
            raise InvalidState("The state parameter is not one we issued.") from None
        state = await self.states.get(state_id)
        if state is None or not secret:
            raise InvalidState("The state parameter is not one we issued.")
        if not hmac.compare_digest(state.secret_hash, _sha256(secret)):
            raise StateTampered("The state parameter has been altered.")
        if state.consumed_at is not None:
            raise StateAlreadyUsed("This connect link has already been used; start again.")
        now = utcnow()
        if state.expires_at <= now:
            raise StateExpired("This connect link has expired; start again.")
        self._check_binding(state, caller, cookies)
        # A conditional update decides which of two racing callbacks consumes the state.
        if not await self.states.consume(state.id, now):
            raise StateAlreadyUsed("This connect link has already been used; start again.")
        state.consumed_at = now
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
        caller: ApiCaller | None,
        cookies: Mapping[str, str],
    ) -> ConnectOutcome:
        """Finish the flow Xero redirected back from: one connection per authorised tenant that
        no other organisation holds. Committed before it returns, and only then are the token
        sets this consent replaced revoked at Xero, outside any write transaction; when it
        fails, nothing but the spent state is kept."""
        try:
            pending = await self._consume_state(state, caller, cookies)
            outcome = await self._store_consent(pending, code=code, error=error)
        except BaseException:
            await self.session.rollback()
            raise
        await self.session.commit()
        await self.retirement.send_queued()
        return outcome

    async def _store_consent(
        self, pending: OAuthState, *, code: str | None, error: str | None
    ) -> ConnectOutcome:
        """Exchange the code and store a connection per accepted tenant, in this transaction."""
        if error or not code:
            raise AuthorisationDenied(f"Xero did not grant access ({error or 'no code'}).")
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
        organization = await OrganizationRepository(self.session).get_organization(
            pending.organization_id
        )
        outcome = ConnectOutcome(
            organization_id=pending.organization_id,
            organization_name=organization.name if organization else "",
        )
        held = await self.connections.tenants_held_elsewhere(
            pending.organization_id, Provider.XERO.value, (t.tenant_id for t in tenants)
        )
        accepted = [t for t in tenants if t.tenant_id not in held]
        outcome.refused = [self._refusal(t) for t in tenants if t.tenant_id in held]
        if outcome.refused and not accepted:
            # Neither stored nor revoked: revoking this consent would remove the Xero connection
            # the other organisation now shares.
            raise TenantHeldByAnotherOrganization(
                _held_elsewhere_detail(r.tenant_name or r.tenant_id for r in outcome.refused),
                tenant_ids=[r.tenant_id for r in outcome.refused],
            )
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
        await self.consent_tenants.record(grant.id, (t.tenant_id for t in tenants))
        replaced_grants: set[uuid.UUID] = set()
        for tenant in accepted:
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
            outcome.connections.append(connection)
        await self.session.flush()
        for old in replaced_grants:
            await self.retirement.retire(old, RevocationReason.REPLACED)
        if not outcome.connections:
            raise ConnectionNotFound("Xero granted access to no organisation.")
        logger.info(
            "xero connected",
            extra={
                "organization_id": str(pending.organization_id),
                "tenants": len(outcome.connections),
                "refused": len(outcome.refused),
            },
        )
        return outcome

    @staticmethod
    def _refusal(tenant: XeroTenantConnection) -> RefusedTenant:
        return RefusedTenant(
            tenant_id=tenant.tenant_id,
            tenant_name=tenant.tenant_name,
            error=TenantHeldByAnotherOrganization.code,
            detail=_held_elsewhere_detail([tenant.tenant_name or tenant.tenant_id]),
        )
