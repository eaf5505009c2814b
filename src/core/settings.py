"""The one settings object. Every value comes from the environment (or `.env`), prefix-free."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

VAR_DIR = Path("var")
# Where Xero sends the browser back after consent (the callback route of the Xero auth router).
XERO_CALLBACK_PATH = "/external-accounting/xero/callback"


class ConfigurationError(RuntimeError):
    """The configuration cannot run the service safely; the message says what to set."""


class Settings(BaseSettings):
    """Configuration for the service, the CLI and the demo."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Unset, it is `development` on embedded SQLite and `production` on a server database: a
    # deployment that forgets it must not get development's throwaway encryption key.
    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    log_json: bool = False
    # `/metrics` (Prometheus), unauthenticated like /healthz: turn it off, or keep it off the
    # public network, where its numbers (calls, runs, queue depth) should stay private.
    metrics_enabled: bool = True
    # A series per Xero tenant (`ledgersync_xero_tenant_calls_total`): off, as the number of
    # tenants is unbounded; on for small deployments that want calls per organisation.
    metrics_tenant_labels: bool = False

    database_url: str = f"sqlite+aiosqlite:///{VAR_DIR / 'ledgersync.db'}"
    database_echo: bool = False

    public_base_url: str = "http://127.0.0.1:8000"

    xero_authorize_url: str = "https://login.xero.com/identity/connect/authorize"
    xero_token_url: str = "https://identity.xero.com/connect/token"
    xero_revocation_url: str = "https://identity.xero.com/connect/revocation"
    xero_connections_url: str = "https://api.xero.com/connections"
    xero_accounting_url: str = "https://api.xero.com/api.xro/2.0"
    xero_client_id: str = ""
    xero_client_secret: SecretStr = SecretStr("")
    # Unset: the callback under PUBLIC_BASE_URL (see `_redirect_uri_from_base_url`).
    xero_redirect_uri: str = ""
    # Xero's webhook signing key (docs/webhooks.md). Unset: webhooks are off and every
    # delivery is refused (401); set: deliveries drive targeted syncs and schedules relax.
    xero_webhook_key: SecretStr = SecretStr("")
    # Events of one connection arriving within this window become one job (a burst of edits
    # costs one fetch per 50 changed invoices, not one per event).
    webhook_coalesce_seconds: float = Field(default=1.5, ge=0, le=60)
    # A webhook body larger than this is refused (413) before it is read further: Xero's
    # batches are a few kilobytes, so anything near this is not Xero.
    webhook_max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # When another sync of the connection holds the invoice lease, the targeted sync waits this
    # long and tries again (its events stay pending meanwhile).
    webhook_busy_retry_seconds: float = Field(default=5.0, gt=0)
    xero_scopes: str = "offline_access accounting.invoices.read accounting.settings.read"

    token_encryption_keys: SecretStr = SecretStr("")
    token_key_file: Path = VAR_DIR / "token_encryption.key"
    xero_connect_success_url: str | None = None
    oauth_state_ttl_seconds: int = Field(default=600, gt=0)
    token_refresh_margin_seconds: int = Field(default=120, ge=0)
    # Where a browser's connect flow ends when set (else on a small page of ours): the success
    # URL gets `?org_id=&connections=`, the failure URL `?error=<code>`.
    xero_connect_failure_url: str | None = None
    # How long a connect link (POST /connect-sessions) may wait to be opened.
    connect_session_ttl_seconds: int = Field(default=86_400, gt=0)
    # A console sign-in (/console) lasts this long; signing out, or the API key's revocation or
    # expiry, ends it sooner.
    console_session_ttl_seconds: int = Field(default=8 * 3600, gt=0)
    # Expired states and connect sessions are kept this long (a late callback then hears
    # "expired", not "unknown"), then purged.
    oauth_state_retention_seconds: int = Field(default=3600, ge=0)
    # Revocations Xero did not confirm are retried with capped exponential backoff, at start-up
    # and every `maintenance_interval_seconds` (0: only by `ledgersync revocations retry`).
    revocation_retry_base_seconds: float = Field(default=60.0, ge=0)
    revocation_retry_max_seconds: float = Field(default=21_600.0, ge=0)
    maintenance_interval_seconds: float = Field(default=300.0, ge=0)
    # Syncs (runs, one per connection synced) an organisation may start per window; beyond it a
    # 429. Keeps what members can spend well inside a tenant's 5,000 daily Xero calls.
    sync_rate_limit_per_org: int = Field(default=120, ge=1)
    sync_rate_limit_window_seconds: int = Field(default=3600, ge=1)

    # Xero's calls per tenant per day on the customer's tier (5,000; 1,000 on Xero's smallest):
    # the reserve and the schedules' margin default to a tenth of it, and the console charts
    # each day's calls against it (the limiter reads the live budget from Xero's
    # X-DayLimit-Remaining instead).
    xero_day_limit: int = Field(default=5000, ge=1)
    # Calls of each tenant's daily Xero budget left to the customer's other apps: a sync pauses
    # (rate_limited_daily) rather than spend them. Unset: XERO_DAY_LIMIT / 10 (500 of 5,000).
    xero_daily_reserve: int = Field(default=500, ge=0)
    xero_reserve_pause_seconds: int = Field(default=3600, ge=1)
    # Xero's per-tenant limits as the call limiter paces them (Xero's documented values; the
    # sandbox's time scale shortens the minute). REDIS_URL shares the count between processes.
    xero_minute_limit: int = Field(default=60, ge=1)
    xero_concurrent_limit: int = Field(default=5, ge=1)
    xero_app_minute_limit: int = Field(default=10_000, ge=1)
    xero_minute_seconds: float = Field(default=60.0, gt=0)
    # Off only against a sandbox that enforces no limits (the unthrottled benchmark).
    xero_pacing: bool = True
    redis_url: str | None = None
    xero_retry_attempts: int = Field(default=5, ge=1)
    xero_retry_base_delay_seconds: float = Field(default=0.5, ge=0)
    xero_retry_max_delay_seconds: float = Field(default=8.0, ge=0)

    http_timeout_seconds: float = Field(default=30.0, gt=0)
    http_connect_timeout_seconds: float = Field(default=10.0, gt=0)

    # Schedules (docs/jobs.md): every active connection is synced this often unless its own
    # schedule (PUT /connections/{id}/schedule) says otherwise. When the connection's last known
    # daily budget is within `schedule_day_limit_margin` calls of XERO_DAILY_RESERVE its
    # intervals are multiplied by `schedule_day_limit_stretch`; at or under the reserve it waits.
    schedule_invoices_minutes: int = Field(default=15, ge=1, le=10_080)
    schedule_accounts_minutes: int = Field(default=60, ge=1, le=10_080)
    # With webhooks on (XERO_WEBHOOK_KEY set) events bring changes within seconds and the
    # schedule is only the safety net for dropped deliveries: these defaults replace the two
    # above (a connection's own schedule still wins).
    schedule_invoices_minutes_with_webhooks: int = Field(default=90, ge=1, le=10_080)
    schedule_accounts_minutes_with_webhooks: int = Field(default=360, ge=1, le=10_080)
    schedule_day_limit_margin: int = Field(default=500, ge=0)  # unset: XERO_DAY_LIMIT / 10
    schedule_day_limit_stretch: int = Field(default=4, ge=1)
    # How often the scheduler looks for what is due (a divisor of 60): a slot waits up to this
    # long. Benchmarks and tests that compress the clock compress it too.
    schedule_tick_seconds: int = Field(default=60, ge=1, le=60)
    # Off: nothing is synced unless someone, a webhook or the CLI asks (no scheduled syncs and no
    # reconciliation sweeps are queued), e.g. a staging copy pointed at real tenants, or a
    # maintenance window. Syncs already queued still run.
    scheduled_syncs: bool = True
    # The reconciliation sweep (docs/reconciliation.md): every `reconcile_every_minutes` from
    # `reconcile_start_minute` past midnight UTC, each connection at its own instant within
    # `reconcile_spread_minutes` after it (nightly by default: 02:00-06:00 UTC), re-reads the
    # open invoices and those dated in the last `reconcile_window_days` days, at most
    # `reconcile_max_calls` calls per connection per sweep (the next sweep goes on from there).
    reconcile_every_minutes: int = Field(default=1440, ge=1, le=10_080)
    reconcile_start_minute: int = Field(default=120, ge=0, le=10_079)
    reconcile_spread_minutes: int = Field(default=240, ge=1, le=10_080)
    reconcile_window_days: int = Field(default=90, ge=0, le=3650)
    reconcile_max_calls: int = Field(default=50, ge=1, le=5000)
    # Token keep-alive: Xero forgets a refresh token unused for 60 days, so token sets not
    # refreshed for this many days are refreshed by a periodic job (`ledgersync tokens keep-alive`).
    token_keepalive_days: int = Field(default=30, ge=1, le=59)

    # Background jobs (Procrastinate; docs/jobs.md). On PostgreSQL `ledgersync worker` processes
    # run them; on SQLite `serve` runs them in-process. A worker beats every
    # `job_heartbeat_seconds`; one silent for `job_stalled_after_seconds` is taken for dead, and
    # every `job_stalled_check_seconds` each live worker re-queues a dead one's jobs.
    job_heartbeat_seconds: float = Field(default=10.0, gt=0)
    job_stalled_after_seconds: float = Field(default=30.0, gt=0)
    job_stalled_check_seconds: float = Field(default=10.0, gt=0)
    # New jobs wake a PostgreSQL worker at once (LISTEN/NOTIFY); retried and scheduled ones wait
    # for this poll. A second: a webhook's coalesced job is scheduled 1.5 s ahead, and a 5 s poll
    # made its freshness p95 miss 3 s (bench/freshness.py); an idle worker's poll is one query.
    job_poll_seconds: float = Field(default=1.0, gt=0)
    job_concurrency: int = Field(default=10, ge=1)
    # How long a stopping worker waits for its jobs before cancelling them (unset: until done).
    job_shutdown_grace_seconds: float | None = Field(default=None, ge=0)
    # A background sync that failed on something temporary (the provider down, timeouts) is
    # queued again this many times, after capped exponential backoff, then stays failed.
    sync_retry_attempts: int = Field(default=5, ge=0)
    sync_retry_base_seconds: float = Field(default=30.0, ge=0)
    sync_retry_max_seconds: float = Field(default=1800.0, ge=0)
    # Outbound webhooks (POST /webhook-endpoints): each delivery is attempted at most
    # `outbound_webhook_attempts` times, after capped exponential backoff from
    # `outbound_webhook_retry_base_seconds`, each POST given `outbound_webhook_timeout_seconds`.
    # The dispatcher looks for due deliveries every `outbound_webhook_tick_seconds` (a divisor
    # of 60). Endpoints must be https (or http to localhost) unless `outbound_webhook_allow_http`.
    outbound_webhook_attempts: int = Field(default=8, ge=1, le=50)
    outbound_webhook_retry_base_seconds: float = Field(default=10.0, ge=0)
    outbound_webhook_retry_max_seconds: float = Field(default=3600.0, ge=0)
    outbound_webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    outbound_webhook_tick_seconds: int = Field(default=5, ge=1, le=60)
    outbound_webhook_allow_http: bool = False
    # `invoices.changed` / `accounts.changed` carry at most this many ids each: the announcer
    # reads a connection's changes this many at a time, one event per object type per read.
    outbound_changes_batch_size: int = Field(default=500, ge=1, le=10_000)
    # Modules whose tasks workers load besides ours (tests, plugins): JSON, `["pkg.mod"]`.
    job_task_modules: list[str] = Field(default_factory=list)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        """Accept plain `postgresql://` / `sqlite://` URLs and pick the async driver for them."""
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if value.startswith("sqlite://"):
            return "sqlite+aiosqlite://" + value.split("://", 1)[1]
        return value

    @model_validator(mode="after")
    def _redirect_uri_from_base_url(self) -> Settings:
        """The redirect URI is our callback under the public base URL unless set on its own, so
        serving on another host or port needs one setting, not two that must agree."""
        if not self.xero_redirect_uri:
            self.xero_redirect_uri = self.public_base_url.rstrip("/") + XERO_CALLBACK_PATH
        return self

    @model_validator(mode="after")
    def _budget_shares_from_the_day_limit(self) -> Settings:
        """The reserve and the schedules' margin follow the tier's day limit unless set: 500 of
        5,000 calls is a tenth, and the same 500 of a 1,000-call tier would be half of it."""
        for name in ("xero_daily_reserve", "schedule_day_limit_margin"):
            if name not in self.model_fields_set:
                # Not through setattr: the field stays "unset" (a copy re-derives nothing).
                self.__dict__[name] = self.xero_day_limit // 10
        if self.xero_daily_reserve >= self.xero_day_limit:
            raise ValueError("XERO_DAILY_RESERVE must be less than XERO_DAY_LIMIT")
        return self

    @field_validator("schedule_tick_seconds", "outbound_webhook_tick_seconds")
    @classmethod
    def _tick_divides_a_minute(cls, value: int) -> int:
        if 60 % value:
            raise ValueError("a tick in seconds must divide 60 (1, 2, 3, 4, 5, 6, 10, ...)")
        return value

    @model_validator(mode="after")
    def _stalled_after_several_heartbeats(self) -> Settings:
        # A live worker that missed one beat (a busy loop, a slow database) must not lose its jobs.
        if self.job_stalled_after_seconds < 2 * self.job_heartbeat_seconds:
            raise ValueError(
                "JOB_STALLED_AFTER_SECONDS must be at least twice JOB_HEARTBEAT_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _environment_from_database(self) -> Settings:
        if "environment" not in self.model_fields_set and not self.is_sqlite:
            # Not through setattr: the field stays "unset", so errors can say why it is this.
            self.__dict__["environment"] = "production"
        return self

    def require_service_settings(self) -> None:
        """Refuse to run the service outside development without what it cannot work without."""
        if self.environment != "development" and not self.xero_client_id.strip():
            raise ConfigurationError(
                f"XERO_CLIENT_ID is required (ENVIRONMENT is {self.environment}"
                + (
                    ""
                    if "environment" in self.model_fields_set
                    else ", since DATABASE_URL is a server database"
                )
                + "): set XERO_CLIENT_ID and XERO_CLIENT_SECRET to your Xero app's credentials."
            )

    @property
    def webhooks_enabled(self) -> bool:
        """True when Xero's webhook key is configured: deliveries are accepted."""
        return bool(self.xero_webhook_key.get_secret_value())

    @property
    def is_sqlite(self) -> bool:
        """True when the database is the embedded SQLite file."""
        return self.database_url.startswith("sqlite")


def setting_default(name: str) -> Any:
    """A setting's default, for a class that takes a few settings as fields (`RetryPolicy`,
    `CallLimits`) and must not state the numbers a second time."""
    return Settings.model_fields[name].default


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
