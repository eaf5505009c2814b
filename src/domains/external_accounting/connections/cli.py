"""Operator commands `ledgersync connections list` and `ledgersync keys rotate-encryption` (the
connections hold the encrypted token sets)."""

from __future__ import annotations

import uuid

import typer

from src.core.commands import print_rows, run_in_transaction
from src.core.crypto import TokenCipher
from src.core.settings import get_settings
from src.domains.external_accounting.connections.encryption_keys import rotate_encryption
from src.domains.external_accounting.connections.service import list_connections

connections_app = typer.Typer(help="Connections to Xero organisations.", no_args_is_help=True)


def rotate_encryption_keys() -> None:
    """Re-encrypt every stored token with the first key of TOKEN_ENCRYPTION_KEYS."""
    cipher = TokenCipher.from_settings(get_settings())
    count = run_in_transaction(lambda s: rotate_encryption(s, cipher))
    typer.echo(f"re-encrypted {count} secrets")


@connections_app.command("list")
def list_all(
    org: uuid.UUID | None = typer.Option(None, "--org", help="Only this organisation's."),
    json_lines: bool = typer.Option(
        False, "--json", help="One JSON object per line instead of columns."
    ),
) -> None:
    """Connections: organisation, tenant, status, connected since, last successful sync."""
    listed = run_in_transaction(lambda s: list_connections(s, org))
    print_rows(
        [
            {
                "id": c.id,
                "organization_id": c.organization_id,
                "provider": c.provider,
                "tenant_id": c.tenant_id,
                "tenant_name": c.tenant_name,
                "status": c.status,
                "connected_at": c.connected_at,
                "last_sync_at": c.last_sync_at,
            }
            for c in listed
        ],
        (
            "id",
            "organization_id",
            "provider",
            "tenant_id",
            "tenant_name",
            "status",
            "connected_at",
            "last_sync_at",
        ),
        json_lines=json_lines,
    )
