"""Operator commands: `ledgersync orgs ...`, `users ...`, `keys ...`."""

from __future__ import annotations

import uuid

import typer

from src.core.commands import run_in_transaction
from src.domains.organizations.models import Role
from src.domains.organizations.service import OrganizationService

orgs_app = typer.Typer(help="Customer organisations.", no_args_is_help=True)
users_app = typer.Typer(help="Users and their roles.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys and token encryption keys.", no_args_is_help=True)
# `keys rotate-encryption` is the connections' (they hold the encrypted tokens): src/cli.py adds it.


@orgs_app.command("create")
def create_org(name: str = typer.Argument(..., help="Organisation name.")) -> None:
    """Create an organisation and print its id."""
    organization = run_in_transaction(lambda s: OrganizationService(s).create_organization(name))
    typer.echo(str(organization.id))


@users_app.command("create")
def create_user(
    email: str = typer.Argument(..., help="The user's email."),
    org: uuid.UUID = typer.Option(..., "--org", help="Organisation id."),
    role: Role = typer.Option(Role.MEMBER, "--role", help="owner, admin or member."),
) -> None:
    """Add a user to an organisation and print a new API key (shown once, stored only hashed)."""
    _, issued = run_in_transaction(
        lambda s: OrganizationService(s).add_user(email, org, role.value)
    )
    typer.echo(issued.key)


@keys_app.command("revoke")
def revoke_key(key: str = typer.Argument(..., help="The API key, or its prefix.")) -> None:
    """Revoke an API key."""
    if not run_in_transaction(lambda s: OrganizationService(s).revoke_key(key)):
        typer.echo("error: no such API key", err=True)
        raise typer.Exit(2)
    typer.echo("revoked")
