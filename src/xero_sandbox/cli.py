"""`ledgersync sandbox ...`: run the Xero sandbox."""

from __future__ import annotations

from typing import Any

import httpx
import typer
import uvicorn

from src.xero_sandbox.app import create_sandbox_app
from src.xero_sandbox.config import SandboxConfig

app = typer.Typer(help="The Xero sandbox: Xero's identity and accounting APIs, emulated.")


def as_environment(client_settings: dict[str, Any]) -> dict[str, str]:
    """Client settings as the environment variables ledgersync reads them from."""
    return {
        name.upper(): str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in client_settings.items()
    }


def environment_for(sandbox_url: str) -> dict[str, str]:
    """The XERO_* variables that point ledgersync at the sandbox running at `sandbox_url`, as
    that sandbox reports them (its client credentials and limits, whatever it was started with).
    """
    url = sandbox_url.rstrip("/")
    try:
        response = httpx.get(f"{url}/_sandbox/client-settings", timeout=10.0)
        response.raise_for_status()
    except httpx.HTTPError as error:
        raise typer.BadParameter(
            f"no Xero sandbox answers at {url} ({error}); start one with "
            "`ledgersync sandbox serve` and pass the URL it prints",
            param_hint="--sandbox",
        ) from None
    return as_environment(response.json())


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
    webhook_url: str | None = typer.Option(
        None, help="POST Xero's webhook event batches here (also PUT /_sandbox/webhooks)."
    ),
    webhook_key: str | None = typer.Option(
        None, help="The webhook signing key (x-xero-signature); no deliveries without one."
    ),
    webhook_batch_window: float = typer.Option(
        0.5, help="Seconds Xero collects events into one batch (compressed by --time-scale)."
    ),
    webhook_max_attempts: int = typer.Option(
        30, help="Attempts per delivery before Xero gives up and disables the webhook."
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
        webhook_url=webhook_url,
        webhook_key=webhook_key,
        webhook_batch_window_s=webhook_batch_window,
        webhook_max_attempts=webhook_max_attempts,
    )
    typer.echo(f"generating {tenants} tenant(s) x {invoices} invoices (seed {seed})...", err=True)
    application = create_sandbox_app(config)
    for tenant in application.state.sandbox.store.tenants.values():
        typer.echo(f"  tenant {tenant.tenant_id}  {tenant.name}", err=True)
    base_url = f"http://{host}:{port}"
    typer.echo(f"Xero sandbox on {base_url}  (client_id {client_id})", err=True)
    if webhook_url:
        signed = "signed" if webhook_key else "not sent until a key is set"
        typer.echo(f"Webhooks to {webhook_url} ({signed})", err=True)
    typer.echo(f"Point ledgersync at it:  ledgersync serve --sandbox {base_url}", err=True)
    typer.echo("or export these before starting it another way:", err=True)
    for name, value in as_environment(config.client_settings(base_url)).items():
        typer.echo(f"  export {name}={value}", err=True)
    uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)
