"""Operator commands: `ledgersync orgs ...`, `users ...`, `keys ...`."""

from __future__ import annotations

import uuid
from dataclasses import asdict

import typer

from src.core.commands import print_rows, run_in_transaction
from src.domains.organizations.models import Role
from src.domains.organizations.service import IssuedKey, OrganizationService

orgs_app = typer.Typer(help="Customer organisations.", no_args_is_help=True)
users_app = typer.Typer(help="Users and their roles.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys and token encryption keys.", no_args_is_help=True)
# `keys rotate-encryption` is the connections' (they hold the encrypted tokens): src/cli.py adds it.

JSON_OPTION = typer.Option(False, "--json", help="One JSON object per line instead of columns.")
ORG_FILTER = typer.Option(None, "--org", help="Only this organisation's.")
EXPIRES_OPTION = typer.Option(
    None, "--expires-in-days", min=1, help="The key stops working this many days from now."
)


def _print_key(issued: IssuedKey) -> None:
    """The key on stdout (shown once, stored only hashed); when it expires on stderr, so that
    `KEY=$(ledgersync ...)` captures the key alone."""
    typer.echo(issued.key)
    if issued.expires_at is not None:
        typer.echo(f"expires at {issued.expires_at.isoformat(timespec='seconds')}", err=True)


@orgs_app.command("create")
def create_org(name: str = typer.Argument(..., help="Organisation name.")) -> None:
    """Create an organisation and print its id."""
    organization = run_in_transaction(lambda s: OrganizationService(s).create_organization(name))
    typer.echo(str(organization.id))


@orgs_app.command("list")
def list_orgs(json_lines: bool = JSON_OPTION) -> None:
    """Every organisation: id, name, created, members."""
    listed = run_in_transaction(lambda s: OrganizationService(s).list_organizations())
    print_rows(
        [asdict(o) for o in listed], ("id", "name", "created_at", "members"), json_lines=json_lines
    )


@users_app.command("create")
def create_user(
    email: str = typer.Argument(..., help="The user's email."),
    org: uuid.UUID = typer.Option(..., "--org", help="Organisation id."),
    role: Role = typer.Option(Role.MEMBER, "--role", help="owner, admin or member."),
    expires_in_days: int | None = EXPIRES_OPTION,
) -> None:
    """Add a user to an organisation and print their API key for it (shown once, stored only
    hashed). A user already in the organisation is refused: see `users set-role`, `keys create`."""
    _, issued = run_in_transaction(
        lambda s: OrganizationService(s).add_user(
            email, org, role.value, expires_in_days=expires_in_days
        )
    )
    _print_key(issued)


@users_app.command("set-role")
def set_role(
    email: str = typer.Argument(..., help="The user's email."),
    org: uuid.UUID = typer.Option(..., "--org", help="Organisation id."),
    role: Role = typer.Option(..., "--role", help="owner, admin or member."),
) -> None:
    """Change a member's role in an organisation (their keys keep working, with the new role)."""
    membership = run_in_transaction(lambda s: OrganizationService(s).set_role(email, org, role))
    typer.echo(f"{email.lower()} is now {membership.role} of {org}")


@users_app.command("list")
def list_users(org: uuid.UUID | None = ORG_FILTER, json_lines: bool = JSON_OPTION) -> None:
    """Memberships: email, organisation, role, joined."""
    listed = run_in_transaction(lambda s: OrganizationService(s).list_members(org))
    print_rows(
        [asdict(m) for m in listed],
        ("email", "organization_id", "organization", "role", "joined_at"),
        json_lines=json_lines,
    )


@keys_app.command("create")
def create_key(
    user: str = typer.Option(..., "--user", help="The member's email."),
    org: uuid.UUID = typer.Option(..., "--org", help="The organisation the key acts for."),
    expires_in_days: int | None = EXPIRES_OPTION,
) -> None:
    """Mint another API key for a member, valid for that organisation only (shown once)."""
    issued = run_in_transaction(
        lambda s: OrganizationService(s).create_key(user, org, expires_in_days=expires_in_days)
    )
    _print_key(issued)


@keys_app.command("list")
def list_keys(org: uuid.UUID | None = ORG_FILTER, json_lines: bool = JSON_OPTION) -> None:
    """API keys by prefix (never a secret): user, organisation, created, expires, revoked."""
    listed = run_in_transaction(lambda s: OrganizationService(s).list_keys(org))
    print_rows(
        [asdict(k) for k in listed],
        ("prefix", "email", "organization_id", "created_at", "expires_at", "revoked_at"),
        json_lines=json_lines,
    )


@keys_app.command("revoke")
def revoke_key(key: str = typer.Argument(..., help="The API key, or its prefix.")) -> None:
    """Revoke an API key."""
    if not run_in_transaction(lambda s: OrganizationService(s).revoke_key(key)):
        typer.echo("error: no such API key", err=True)
        raise typer.Exit(2)
    typer.echo("revoked")
