"""Dependencies of the console's pages: the signed-in browser (a session cookie), its role, and
the CSRF check every form passes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from src.core.deps import SessionDep, SettingsDep
from src.domains.console.service import ConsoleSessionService, ConsoleSignIn, ConsoleViews
from src.domains.external_accounting.deps import FactoryDep
from src.domains.organizations.exceptions import InsufficientRole
from src.domains.organizations.models import Role

SESSION_COOKIE = "ledgersync_console"
SIGN_IN_COOKIE = "ledgersync_console_sign_in"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


def get_console_sessions(session: SessionDep, settings: SettingsDep) -> ConsoleSessionService:
    """Console sign-ins on the request's session."""
    return ConsoleSessionService(session, settings)


ConsoleSessionsDep = Annotated[ConsoleSessionService, Depends(get_console_sessions)]


def get_console_views(
    session: SessionDep, settings: SettingsDep, factory: FactoryDep
) -> ConsoleViews:
    """What the pages show, on the request's session."""
    return ConsoleViews(session, settings, factory)


ConsoleViewsDep = Annotated[ConsoleViews, Depends(get_console_views)]


async def signed_in(request: Request, sessions: ConsoleSessionsDep) -> ConsoleSignIn:
    """The browser's session, as a member or higher (otherwise to the sign-in page)."""
    return await sessions.resume(request.cookies.get(SESSION_COOKIE))


SignedInMember = Annotated[ConsoleSignIn, Depends(signed_in)]


async def signed_in_admin(signed: SignedInMember) -> ConsoleSignIn:
    """The browser's session, as an admin or owner (the API's AdminOfOrg rule)."""
    if not signed.access.at_least(Role.ADMIN):
        raise InsufficientRole(f"This needs the {Role.ADMIN.value} role or higher.")
    return signed


SignedInAdmin = Annotated[ConsoleSignIn, Depends(signed_in_admin)]


async def _submitted_csrf(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    value = (await request.form()).get(CSRF_FIELD)
    return value if isinstance(value, str) else None


async def member_form(request: Request, signed: SignedInMember) -> ConsoleSignIn:
    """A form a member may send, carrying this session's CSRF token."""
    ConsoleSessionService.check_csrf(signed, await _submitted_csrf(request))
    return signed


async def admin_form(request: Request, signed: SignedInAdmin) -> ConsoleSignIn:
    """A form only an admin may send, carrying this session's CSRF token."""
    ConsoleSessionService.check_csrf(signed, await _submitted_csrf(request))
    return signed


MemberForm = Annotated[ConsoleSignIn, Depends(member_form)]
AdminForm = Annotated[ConsoleSignIn, Depends(admin_form)]
