"""Dependencies for Xero auth: the process's XeroAuthManager, identity client and cipher, and
the connect service built on them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from src.core.crypto import TokenCipher
from src.core.deps import HttpClientDep, SessionDep, SessionFactoryDep, SettingsDep
from src.domains.external_accounting.xero.auth.auth_manager import XeroAuthManager
from src.domains.external_accounting.xero.auth.connect_service import XeroConnectService
from src.domains.external_accounting.xero.auth.identity_client import XeroIdentityClient


def get_cipher(request: Request) -> TokenCipher:
    cipher: TokenCipher = request.app.state.token_cipher
    return cipher


def get_auth_manager(request: Request) -> XeroAuthManager:
    """One per process: it holds the per-grant refresh locks."""
    manager: XeroAuthManager = request.app.state.xero_auth_manager
    return manager


def get_identity_client(http: HttpClientDep, settings: SettingsDep) -> XeroIdentityClient:
    return XeroIdentityClient(http, settings)


CipherDep = Annotated[TokenCipher, Depends(get_cipher)]
XeroAuthManagerDep = Annotated[XeroAuthManager, Depends(get_auth_manager)]
IdentityClientDep = Annotated[XeroIdentityClient, Depends(get_identity_client)]


def get_connect_service(
    session: SessionDep,
    settings: SettingsDep,
    cipher: CipherDep,
    identity: IdentityClientDep,
    session_factory: SessionFactoryDep,
) -> XeroConnectService:
    """The connect flow on the request's session and the process's shared clients."""
    return XeroConnectService(session, settings, cipher, identity, session_factory=session_factory)


ConnectServiceDep = Annotated[XeroConnectService, Depends(get_connect_service)]
