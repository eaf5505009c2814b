"""Operator commands: `ledgersync orgs ...`, `users ...`, `keys ...`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from src.core.crypto import TokenCipher
from src.core.database import create_engine, create_session_factory
from src.core.errors import LedgersyncError
from src.core.settings import get_settings
from src.domains.external_accounting.connections.encryption_keys import rotate_encryption
from src.domains.organizations.models import Role
from src.domains.organizations.service import OrganizationService

orgs_app = typer.Typer(help="Customer organisations.", no_args_is_help=True)
users_app = typer.Typer(help="Users and their roles.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys and token encryption keys.", no_args_is_help=True)

T = TypeVar("T")


def _run(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction; typed errors become a clean exit."""

    async def main() -> T:
        engine = create_engine(get_settings().database_url)
        try:
            async with create_session_factory(engine)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except LedgersyncError as error:
        typer.echo(f"error: {error.detail}", err=True)
        raise typer.Exit(2) from error


@orgs_app.command("create")
def create_org(name: str = typer.Argument(..., help="Organisation name.")) -> None:
    """Create an organisation and print its id."""
    organization = _run(lambda s: OrganizationService(s).create_organization(name))
    typer.echo(str(organization.id))


@users_app.command("create")
def create_user(
    email: str = typer.Argument(..., help="The user's email."),
    org: uuid.UUID = typer.Option(..., "--org", help="Organisation id."),
    role: Role = typer.Option(Role.MEMBER, "--role", help="owner, admin or member."),
) -> None:
    """Add a user to an organisation and print a new API key (shown once, stored only hashed)."""
    _, issued = _run(lambda s: OrganizationService(s).add_user(email, org, role.value))
    typer.echo(issued.key)


@keys_app.command("revoke")
def revoke_key(key: str = typer.Argument(..., help="The API key, or its prefix.")) -> None:
    """Revoke an API key."""
    if not _run(lambda s: OrganizationService(s).revoke_key(key)):
        typer.echo("error: no such API key", err=True)
        raise typer.Exit(2)
    typer.echo("revoked")


@keys_app.command("rotate-encryption")
def rotate_encryption_keys() -> None:
    """Re-encrypt every stored token with the first key of TOKEN_ENCRYPTION_KEYS."""
    cipher = TokenCipher.from_settings(get_settings())
    count = _run(lambda s: rotate_encryption(s, cipher))
    typer.echo(f"re-encrypted {count} secrets")
