"""The `ledgersync` command line."""

from __future__ import annotations

import asyncio
import os

import typer
import uvicorn
from prometheus_client import start_http_server
from pydantic_settings import DotEnvSettingsSource, EnvSettingsSource

from src.core import metrics
from src.core.crypto import TokenCipher
from src.core.jobs import run_worker
from src.core.logging import configure_logging, uvicorn_log_config
from src.core.migrations import upgrade_database
from src.core.settings import ConfigurationError, Settings, get_settings
from src.domains.external_accounting.base.factory import RESOURCES, service_resources
from src.domains.external_accounting.connections.cli import (
    connections_app,
    rotate_encryption_keys,
)
from src.domains.external_accounting.syncs.cli import runs_app, sync_app
from src.domains.external_accounting.xero.auth.cli import revocations_app, tokens_app
from src.domains.organizations.cli import keys_app, orgs_app, users_app
from src.xero_sandbox.cli import app as sandbox_app
from src.xero_sandbox.cli import environment_for

app = typer.Typer(help="ledgersync: keep Xero invoices and accounts in sync.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(orgs_app, name="orgs")
app.add_typer(users_app, name="users")
keys_app.command("rotate-encryption")(rotate_encryption_keys)
app.add_typer(keys_app, name="keys")
app.add_typer(connections_app, name="connections")
app.add_typer(revocations_app, name="revocations")
app.add_typer(tokens_app, name="tokens")
app.add_typer(sync_app, name="sync")
app.add_typer(runs_app, name="runs")


def _configured(field: str) -> bool:
    """Whether a setting is given in the environment or `.env`, read as Settings reads them."""
    return field in EnvSettingsSource(Settings)() or field in DotEnvSettingsSource(Settings)()


def serve_environment(host: str, port: int, sandbox: str | None) -> dict[str, str]:
    """Settings `serve` supplies: a PUBLIC_BASE_URL matching --host/--port unless one is
    configured (the redirect URI follows it), and with --sandbox every XERO_* setting."""
    environment = environment_for(sandbox) if sandbox else {}
    if not _configured("public_base_url"):
        # Every interface is reachable on the loopback one, which Xero accepts over http.
        browsable = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        environment["PUBLIC_BASE_URL"] = f"http://{browsable}:{port}"
    return environment


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(1, help="Worker processes."),
    sandbox: str | None = typer.Option(
        None,
        help="URL of a running Xero sandbox (`ledgersync sandbox serve`): every Xero setting "
        "points at it.",
    ),
) -> None:
    """Run the ledgersync API."""
    # Through the environment, so every worker process (and `get_settings`) sees them.
    os.environ.update(serve_environment(host, port, sandbox))
    get_settings.cache_clear()
    if sandbox:
        typer.echo(f"Xero: the sandbox at {sandbox}", err=True)
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
def worker(
    concurrency: int | None = typer.Option(
        None, min=1, help="Jobs run at once (default: JOB_CONCURRENCY)."
    ),
    queues: list[str] | None = typer.Option(
        None, help="Queues to take jobs from, repeated or comma-separated (default: all)."
    ),
    metrics_port: int | None = typer.Option(
        None,
        min=1,
        max=65535,
        help="Serve this worker's Prometheus metrics at http://0.0.0.0:PORT/metrics.",
    ),
) -> None:
    """Run background jobs (PostgreSQL): any number of workers, on any machines, share the queue."""
    settings = get_settings()
    if settings.is_sqlite:
        typer.echo(
            "error: workers need a PostgreSQL DATABASE_URL; on the embedded SQLite default "
            "`ledgersync serve` runs the jobs itself.",
            err=True,
        )
        raise typer.Exit(2)
    try:  # a worker runs the syncs, so it needs what `serve` needs
        settings.require_service_settings()
        TokenCipher.from_settings(settings)
    except ConfigurationError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, json_lines=settings.log_json)
    names = [name.strip() for value in queues or [] for name in value.split(",") if name.strip()]
    # A worker serves no API: its counters (Xero calls, runs, records written) are its own,
    # on a port of its own. The queue's depth is the API's `/metrics` (it is the database's).
    server = start_http_server(metrics_port, registry=metrics.REGISTRY)[0] if metrics_port else None
    try:
        asyncio.run(_work(settings, concurrency, names or None))
    finally:
        if server is not None:
            server.shutdown()


async def _work(settings: Settings, concurrency: int | None, queues: list[str] | None) -> None:
    """A worker with the resources `serve` has (one engine, HTTP client, call limiter, token
    manager, IntegrationFactory), handed to its tasks; closed after the last job stops."""
    async with service_resources(settings, TokenCipher.from_settings(settings)) as resources:
        await run_worker(
            settings,
            concurrency=concurrency,
            queues=queues,
            additional_context={RESOURCES: resources},
        )


@app.command()
def demo(
    invoices: int = typer.Option(2000, help="Invoices per sandbox organisation."),
    json_lines: bool = typer.Option(
        False,
        "--json",
        help="Print one SyncResult JSON per line, then one for the background sync (its runs).",
    ),
) -> None:
    """Sandbox + OAuth connect + full, incremental and accounts sync, then a background full
    sync followed to its end, on the embedded defaults."""
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
