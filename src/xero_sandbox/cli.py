"""`ledgersync sandbox ...`: run the Xero sandbox."""

from __future__ import annotations

import typer
import uvicorn

from src.xero_sandbox.app import create_sandbox_app
from src.xero_sandbox.config import SandboxConfig

app = typer.Typer(help="The Xero sandbox: Xero's identity and accounting APIs, emulated.")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8900, help="Port to listen on."),
    tenants: int = typer.Option(2, help="Xero organisations to generate."),
    invoices: int = typer.Option(5000, help="Invoices per organisation."),
    accounts: int | None = typer.Option(
        None, help="Accounts per organisation (default: a realistic chart of ~50)."
    ),
    seed: int = typer.Option(7, help="Seed: the same seed gives the same data."),
    auto_approve: bool = typer.Option(
        False, help="Skip the consent page: grant every tenant at once."
    ),
    limits: bool = typer.Option(
        True, help="Enforce Xero's rate limits (--no-limits turns them off)."
    ),
    time_scale: float = typer.Option(
        1.0,
        help="Xero seconds per real second for rate-limit windows (60: a Xero minute lasts 1 s).",
    ),
    latency_ms: float = typer.Option(0.0, help="Added latency per accounting call, in ms."),
    access_token_ttl: int = typer.Option(1800, help="Access token lifetime in seconds."),
    refresh_grace: float = typer.Option(
        1800.0, help="Seconds a spent refresh token may be retried (Xero's grace period)."
    ),
    client_id: str = typer.Option(
        "sandbox-client-id", help="The one OAuth client the sandbox knows."
    ),
    client_secret: str = typer.Option("sandbox-client-secret", help="Its secret."),
    day_limit: int = typer.Option(
        5000, help="Calls per tenant per day (1000 on Xero's smallest tier)."
    ),
) -> None:
    """Serve the sandbox until interrupted."""
    config = SandboxConfig(
        tenants=tenants,
        invoices=invoices,
        accounts=accounts,
        seed=seed,
        auto_approve=auto_approve,
        limits_enabled=limits,
        time_scale=time_scale,
        latency_ms=latency_ms,
        access_token_ttl_s=access_token_ttl,
        refresh_grace_s=refresh_grace,
        client_id=client_id,
        client_secret=client_secret,
        day_limit=day_limit,
    )
    typer.echo(f"generating {tenants} tenant(s) x {invoices} invoices (seed {seed})...", err=True)
    application = create_sandbox_app(config)
    for tenant in application.state.sandbox.store.tenants.values():
        typer.echo(f"  tenant {tenant.tenant_id}  {tenant.name}", err=True)
    typer.echo(f"Xero sandbox on http://{host}:{port}  (client_id {client_id})", err=True)
    uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)
