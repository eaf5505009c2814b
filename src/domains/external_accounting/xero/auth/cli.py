"""Operator commands: `ledgersync revocations ...`, `ledgersync tokens ...`, on the same process
resources as the app and the worker (`service_resources`)."""

from __future__ import annotations

import asyncio

import typer

from src.core.crypto import TokenCipher
from src.core.settings import get_settings
from src.domains.external_accounting.base.factory import service_resources
from src.domains.external_accounting.xero.auth.keep_alive import KeepAliveReport, keep_alive_pass
from src.domains.external_accounting.xero.auth.revocations import (
    MaintenanceReport,
    run_maintenance,
)

revocations_app = typer.Typer(help="Token revocations at Xero.", no_args_is_help=True)
tokens_app = typer.Typer(help="Xero token sets.", no_args_is_help=True)


@revocations_app.command("retry")
def retry_revocations() -> None:
    """Retry the revocations that are due, and purge expired OAuth states."""
    settings = get_settings()

    async def main() -> MaintenanceReport:
        async with service_resources(settings, TokenCipher.from_settings(settings)) as process:
            return await run_maintenance(
                process.session_factory, settings, process.cipher, process.identity
            )

    report = asyncio.run(main())
    typer.echo(
        f"revoked {report.revoked}, still pending {report.still_pending}, "
        f"expired states purged {report.states_purged}"
    )
    if report.still_pending:
        raise typer.Exit(1)


@tokens_app.command("keep-alive")
def keep_alive() -> None:
    """Refresh every Xero token set idle for TOKEN_KEEPALIVE_DAYS (one pass of the hourly job);
    token sets Xero refuses leave their connections needing reauthorisation."""
    settings = get_settings()

    async def main() -> KeepAliveReport:
        async with service_resources(settings, TokenCipher.from_settings(settings)) as process:
            return await keep_alive_pass(
                process.session_factory, process.xero_auth_manager, settings
            )

    report = asyncio.run(main())
    typer.echo(
        f"idle token sets {report.idle}: refreshed {len(report.refreshed)}, "
        f"need reauthorisation {len(report.needs_reauth)}, failed {len(report.failed)}"
    )
    if report.failed:
        raise typer.Exit(1)
