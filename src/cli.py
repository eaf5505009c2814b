"""The `ledgersync` command line."""

from __future__ import annotations

import typer
import uvicorn

from src.core.crypto import TokenCipher
from src.core.logging import uvicorn_log_config
from src.core.migrations import upgrade_database
from src.core.settings import ConfigurationError, get_settings
from src.domains.organizations.cli import keys_app, orgs_app, users_app
from src.xero_sandbox.cli import app as sandbox_app

app = typer.Typer(help="ledgersync: keep Xero invoices and accounts in sync.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(orgs_app, name="orgs")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(1, help="Worker processes."),
) -> None:
    """Run the ledgersync API."""
    settings = get_settings()
    try:  # refuse here, with one clear line, rather than in a worker's traceback
        settings.require_service_settings()
        TokenCipher.from_settings(settings)
    except ConfigurationError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    uvicorn.run(
        "src.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=uvicorn_log_config(json_lines=settings.log_json),
    )


@app.command()
def demo(
    invoices: int = typer.Option(2000, help="Invoices per sandbox organisation."),
    json_lines: bool = typer.Option(False, "--json", help="Print one SyncResult JSON per line."),
) -> None:
    """Sandbox + OAuth connect + full, incremental and accounts sync, on the embedded defaults."""
    from src.demo import run_demo  # imported here: it pulls in the whole app and the sandbox

    results = run_demo(invoices, json_lines)
    if not all(result["success"] for result in results):
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply database migrations (the only way the schema is created)."""
    settings = get_settings()
    upgrade_database(settings.database_url, revision)
    typer.echo(f"database at {revision}")


if __name__ == "__main__":
    app()
