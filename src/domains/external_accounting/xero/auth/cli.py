"""Operator commands: `ledgersync revocations ...`, `ledgersync tokens ...`."""

from __future__ import annotations

import asyncio

import typer

from src.core.crypto import TokenCipher
from src.core.database import create_engine, create_session_factory
from src.core.http import create_http_client
from src.core.settings import get_settings
from src.domains.external_accounting.xero.auth.auth_manager import XeroAuthManager
from src.domains.external_accounting.xero.auth.identity_client import XeroIdentityClient
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
        engine = create_engine(settings.database_url)
        try:
            async with create_http_client(settings) as http:
                return await run_maintenance(
                    create_session_factory(engine),
                    settings,
                    TokenCipher.from_settings(settings),
                    XeroIdentityClient(http, settings),
                )
        finally:
            await engine.dispose()

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
        engine = create_engine(settings.database_url)
        try:
            async with create_http_client(settings) as http:
                session_factory = create_session_factory(engine)
                manager = XeroAuthManager(
                    settings,
                    session_factory,
                    XeroIdentityClient(http, settings),
                    TokenCipher.from_settings(settings),
                )
                return await keep_alive_pass(session_factory, manager, settings)
        finally:
            await engine.dispose()

    report = asyncio.run(main())
    typer.echo(
        f"idle token sets {report.idle}: refreshed {len(report.refreshed)}, "
        f"need reauthorisation {len(report.needs_reauth)}, failed {len(report.failed)}"
    )
    if report.failed:
        raise typer.Exit(1)
