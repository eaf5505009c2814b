"""`XeroAccountingClient`: every raw call to Xero's accounting API.

It builds Xero's filters, sets `xero-tenant-id` and `If-Modified-Since`, parses Xero's dates into
typed models, keeps at most five calls in flight per tenant, reads the rate-limit headers, and
owns the retry policy (in `_send`, the one place retries happen).

Over 400 lines on purpose: keeping every raw Xero call and the single retry loop in one
class is what makes `_send` the only place a call is retried or paced."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import httpx

from src.core import metrics
from src.core.database import JsonText
from src.core.http import MAX_RETRY_AFTER_SECONDS, capped_backoff, retry_after_seconds
from src.core.settings import Settings, setting_default
from src.domains.external_accounting.base.tokens import AccessTokenProvider
from src.domains.external_accounting.connections.models import Connection
from src.domains.external_accounting.connections.usage import UsageTally
from src.domains.external_accounting.exceptions import (
    ProviderDataInvalid,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    TenantAccessRevoked,
)
from src.domains.external_accounting.xero.data.call_limiter import (
    CallLimiter,
    CallLimits,
    InProcessCallLimiter,
)
from src.domains.external_accounting.xero.data.error_messages import (
    MAX_XERO_MESSAGE_CHARS,
    clean,
    xero_message,
)
from src.domains.external_accounting.xero.data.query import (
    if_modified_since,
    quote,
    where_filter,
)
from src.domains.external_accounting.xero.data.xero_models import (
    XeroAccount,
    XeroCreditNote,
    XeroDataInvalid,
    XeroInvoicePage,
    decode_accounts,
    decode_credit_notes,
    decode_invoices,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

MAX_PAGE_SIZE = 1000
# Xero refuses long `IDs=` lists (about 52 GUIDs is the reported limit): ask for 50 at a time.
MAX_IDS_PER_CALL = 50


@dataclass
class RateBudget:
    """What Xero's last response said is left of a tenant's limits."""

    day_remaining: int | None = None
    minute_remaining: int | None = None
    app_minute_remaining: int | None = None
    observed_at: datetime | None = None

    def observe(self, headers: httpx.Headers) -> None:
        def number(name: str) -> int | None:
            value = headers.get(name)
            return int(value) if value and value.isdigit() else None

        day = number("x-daylimit-remaining")
        self.day_remaining = day if day is not None else self.day_remaining
        self.minute_remaining = number("x-minlimit-remaining")
        self.app_minute_remaining = number("x-appminlimit-remaining")
        self.observed_at = datetime.now(UTC)


@dataclass
class TenantThrottle:
    """Per-process state shared by every client: the call limiter (itself shared between
    processes when Redis-backed) and the last budget Xero reported per tenant."""

    limiter: CallLimiter = field(default_factory=lambda: InProcessCallLimiter(CallLimits()))
    budgets: dict[str, RateBudget] = field(default_factory=dict)

    def budget(self, tenant_id: str) -> RateBudget:
        return self.budgets.setdefault(tenant_id, RateBudget())


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter for transient failures, and the daily reserve.
    The defaults are Settings' (`from_settings` is what the service uses)."""

    max_attempts: int = setting_default("xero_retry_attempts")
    base_delay_s: float = setting_default("xero_retry_base_delay_seconds")
    max_delay_s: float = setting_default("xero_retry_max_delay_seconds")
    max_rate_limit_waits: int = 10
    max_retry_after_s: float = 120.0
    daily_reserve: int = setting_default("xero_daily_reserve")
    reserve_pause_s: int = setting_default("xero_reserve_pause_seconds")

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            max_attempts=settings.xero_retry_attempts,
            base_delay_s=settings.xero_retry_base_delay_seconds,
            max_delay_s=settings.xero_retry_max_delay_seconds,
            daily_reserve=settings.xero_daily_reserve,
            reserve_pause_s=settings.xero_reserve_pause_seconds,
        )


def _second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


class XeroAccountingClient:
    """Raw Xero accounting calls for connections, authenticated through an AccessTokenProvider."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        tokens: AccessTokenProvider,
        settings: Settings,
        throttle: TenantThrottle | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.http = http
        self.tokens = tokens
        self.base_url = settings.xero_accounting_url.rstrip("/")
        self.throttle = throttle or TenantThrottle()
        self.retry = retry or RetryPolicy.from_settings(settings)
        self.sleep = sleep
        self.api_calls = 0
        # Seconds this client's calls waited on Xero's limits: the limiter's pacing, and the
        # Retry-After of 429s (a run's live progress shows it).
        self.limit_wait_s = 0.0
        # Calls and bytes per connection and day, for `connection_usage` (the run stores them).
        self.usage = UsageTally()
        self.tenant_metrics = settings.metrics_tenant_labels

    def _note_wait(self, seconds: float) -> None:
        self.limit_wait_s += seconds
        metrics.XERO_LIMIT_WAIT.labels("pacing").inc(seconds)

    def _count_call(
        self, connection: Connection, path: str, response: httpx.Response | None
    ) -> None:
        """One attempt, in the metrics and (when Xero answered) the connection's usage."""
        status = str(response.status_code) if response is not None else "error"
        metrics.XERO_CALLS.labels(metrics.endpoint_template(path), status).inc()
        if self.tenant_metrics:
            metrics.XERO_CALLS_BY_TENANT.labels(connection.tenant_id).inc()
        if response is not None:
            self.usage.note(connection.id, response.num_bytes_downloaded)

    # -- public calls ----------------------------------------------------------------------

    async def get_invoices(
        self,
        connection: Connection,
        *,
        types: Sequence[str] | None = None,
        statuses: Sequence[str] | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        modified_since: datetime | None = None,
        page: int = 1,
        page_size: int = MAX_PAGE_SIZE,
        order: str = "UpdatedDateUTC ASC",
        updated_from: datetime | None = None,
        updated_before: datetime | None = None,
        invoice_id_after: str | None = None,
    ) -> XeroInvoicePage:
        """One page of invoices (with line items: Xero only sends them when `page` is given)."""
        params: dict[str, str | int] = {"page": page, "pageSize": min(page_size, MAX_PAGE_SIZE)}
        where = where_filter(
            types=types,
            date_from=date_from,
            date_to=date_to,
            updated_from=updated_from,
            updated_before=updated_before,
            invoice_id_after=invoice_id_after,
        )
        if where:
            params["where"] = where
        if statuses:
            params["Statuses"] = ",".join(statuses)
        if order:
            params["order"] = order
        headers = {"If-Modified-Since": if_modified_since(modified_since)} if modified_since else {}
        return await self._send(
            connection, "/Invoices", params, headers, lambda body: decode_invoices(body, page)
        )

    async def get_invoices_by_ids(
        self, connection: Connection, invoice_ids: Sequence[str]
    ) -> XeroInvoicePage:
        """The invoices named (at most MAX_IDS_PER_CALL), with line items (`page=1`: Xero sends
        lines only when a page is asked for). An id Xero does not know is simply absent."""
        _check_id_batch(invoice_ids)
        params: dict[str, str | int] = {
            "IDs": ",".join(invoice_ids),
            "page": 1,
            "pageSize": MAX_PAGE_SIZE,
        }
        return await self._send(
            connection, "/Invoices", params, {}, lambda body: decode_invoices(body, 1)
        )

    async def get_credit_notes_by_ids(
        self, connection: Connection, credit_note_ids: Sequence[str]
    ) -> list[XeroCreditNote]:
        """The credit notes named (at most MAX_IDS_PER_CALL), with their allocations."""
        _check_id_batch(credit_note_ids)
        params: dict[str, str | int] = {
            "IDs": ",".join(credit_note_ids),
            "page": 1,
            "pageSize": MAX_PAGE_SIZE,
        }
        return await self._send(connection, "/CreditNotes", params, {}, decode_credit_notes)

    async def iter_invoice_pages(
        self,
        connection: Connection,
        *,
        types: Sequence[str] | None = None,
        statuses: Sequence[str] | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        modified_since: datetime | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> AsyncGenerator[XeroInvoicePage, None]:
        """Every matching invoice, oldest change first, as pages of *new* invoices.

        Paging is a keyset, never page numbers: an invoice edited while we page moves to the end
        instead of shifting the pages under us, so nothing is skipped. Each request restarts one
        second before the newest change already seen (`If-Modified-Since` has one-second
        resolution and undocumented inclusiveness); invoices seen in that overlap are dropped
        here, so callers get each invoice once. A full page inside those seconds cannot move the
        keyset: those seconds are then paged by `InvoiceID` (a `where` bounding `UpdatedDateUTC`
        to them, `order=InvoiceID`, `InvoiceID>Guid(last)`), and paging goes on after them."""
        filters: dict[str, Any] = {
            "types": types,
            "statuses": statuses,
            "date_from": date_from,
            "date_to": date_to,
        }
        since = modified_since
        floor: datetime | None = None  # every change before this second is behind us
        overlap: dict[str, datetime] = {}
        while True:
            result = await self.get_invoices(
                connection,
                **filters,
                modified_since=since,
                updated_from=floor,
                page_size=page_size,
            )
            fresh = _unseen(result, overlap)
            last = _is_last(result, page_size)
            newest = (
                _second(max(i.updated_date_utc for i in result.invoices))
                if result.invoices
                else None
            )
            next_since = newest - timedelta(seconds=1) if newest is not None else None
            if fresh:
                remaining = (
                    max(0, result.item_count - len(result.invoices))
                    if result.item_count is not None
                    else None
                )
                yield _page_of(result, fresh, resume_from=next_since, remaining=remaining)
            if last or newest is None or next_since is None:
                return
            if since is None or next_since > since:
                since = next_since
                overlap = {
                    i.invoice_id: i.updated_date_utc
                    for i in result.invoices
                    if i.updated_date_utc >= next_since
                }
                continue
            # A full page inside [since, newest]: page those seconds by InvoiceID.
            overlap.update({i.invoice_id: i.updated_date_utc for i in result.invoices})
            window_from = max(_second(since), floor) if floor else _second(since)
            window_to = newest + timedelta(seconds=1)
            after: str | None = None
            while True:
                busy = await self.get_invoices(
                    connection,
                    **filters,
                    updated_from=window_from,
                    updated_before=window_to,
                    invoice_id_after=after,
                    order="InvoiceID ASC",
                    page_size=page_size,
                )
                fresh = _unseen(busy, overlap)
                if fresh:
                    # Until the window is done, a restart must page it again from its start.
                    yield _page_of(busy, fresh, resume_from=window_from - timedelta(seconds=1))
                if _is_last(busy, page_size) or not busy.invoices:
                    break
                after = busy.invoices[-1].invoice_id
            floor, overlap = window_to, {}

    async def get_accounts(
        self,
        connection: Connection,
        *,
        types: Sequence[str] | None = None,
        modified_since: datetime | None = None,
    ) -> tuple[list[XeroAccount], list[JsonText]]:
        """The chart of accounts (Xero does not paginate it), optionally only some types."""
        params: dict[str, str | int] = {}
        if types:
            clauses = [f'Type=="{quote(t)}"' for t in types]
            params["where"] = " OR ".join(clauses)
        headers = {"If-Modified-Since": if_modified_since(modified_since)} if modified_since else {}
        return await self._send(connection, "/Accounts", params, headers, decode_accounts)

    # -- the one place that talks HTTP and retries ------------------------------------------

    def _respect_daily_reserve(self, connection: Connection) -> None:
        """Stop before the tenant's daily budget drops into the reserve kept for its other apps
        (Xero's headers tell how much is left; the reset time they do not tell)."""
        budget = self.throttle.budget(connection.tenant_id)
        remaining, seen = budget.day_remaining, budget.observed_at
        # An old reading may predate Xero's reset: once the pause has passed, call and re-read.
        fresh = seen is not None and datetime.now(UTC) - seen < timedelta(
            seconds=self.retry.reserve_pause_s
        )
        if remaining is not None and fresh and remaining <= self.retry.daily_reserve:
            raise _pause_for(
                self.retry.reserve_pause_s,
                f"Only {remaining} of today's Xero calls are left for this organisation; they are "
                "kept for its other apps.",
                reserve=self.retry.daily_reserve,
            )

    def jitter(self, delay: float) -> float:
        """Random spread added to a backoff delay (its own method so tests can pin it)."""
        return random.uniform(0, delay / 2)

    def backoff(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based)."""
        delay = capped_backoff(attempt, base=self.retry.base_delay_s, cap=self.retry.max_delay_s)
        return delay + self.jitter(delay)

    async def _send(
        self,
        connection: Connection,
        path: str,
        params: dict[str, str | int],
        headers: dict[str, str],
        decode: Callable[[bytes], T],
    ) -> T:
        self._respect_daily_reserve(connection)
        token = await self.tokens.get_access_token(connection)
        refreshed = False
        failures = 0
        rate_limit_waits = 0
        while True:
            request_headers = {
                **headers,
                "Authorization": f"Bearer {token}",
                "xero-tenant-id": connection.tenant_id,
                "Accept": "application/json",
            }
            self.api_calls += 1
            problem: str
            response = None
            try:
                # Every attempt is a call Xero counts: each takes its own slot.
                async with self.throttle.limiter.slot(connection.tenant_id, self._note_wait):
                    response = await self.http.get(
                        f"{self.base_url}{path}", params=params, headers=request_headers
                    )
                self._count_call(connection, path, response)
                budget = self.throttle.budget(connection.tenant_id)
                budget.observe(response.headers)
                await self.throttle.limiter.observe(connection.tenant_id, budget.minute_remaining)
                if response.status_code == 200:
                    return decode(response.content)
                problem = f"HTTP {response.status_code}"
            except (httpx.TimeoutException, httpx.TransportError) as error:
                self._count_call(connection, path, None)  # Xero may have seen it all the same
                response, problem = None, type(error).__name__
            except XeroDataInvalid as error:
                raise ProviderDataInvalid(
                    f"Xero answered {path} with records we cannot read "
                    f"({clean(str(error), MAX_XERO_MESSAGE_CHARS)}); nothing from "
                    "that response was stored."
                ) from None
            except ValueError:
                problem = "malformed JSON"  # a body cut short or garbled on the way

            if response is not None and response.status_code == 429:
                retry_after = _retry_after(response)
                kind = response.headers.get("x-rate-limit-problem", "minute").lower()
                metrics.XERO_RATE_LIMITED.labels(metrics.rate_limit_problem(kind)).inc()
                if kind == "day":
                    raise ProviderRateLimited(
                        "Xero's daily call limit for this organisation is spent.",
                        retry_after_seconds=retry_after,
                        resume_after=(
                            datetime.now(UTC) + timedelta(seconds=retry_after)
                        ).isoformat(),
                    )
                rate_limit_waits += 1
                if rate_limit_waits > self.retry.max_rate_limit_waits:
                    raise ProviderUnavailable(f"Xero kept refusing calls ({kind} limit).")
                wait = min(retry_after, self.retry.max_retry_after_s)
                # Every caller of this tenant (in any process sharing the limiter) waits too.
                await self.throttle.limiter.hold(connection.tenant_id, wait)
                logger.info(
                    "xero rate limit; waiting",
                    extra={"problem": kind, "wait_s": wait, "path": path},
                )
                self.limit_wait_s += wait
                metrics.XERO_LIMIT_WAIT.labels("retry_after").inc(wait)
                await self.sleep(wait)
                continue
            if response is not None and response.status_code == 401 and not refreshed:
                refreshed = True
                token = await self.tokens.refresh_after_unauthorized(connection, token)
                continue
            if response is not None and response.status_code == 403:
                raise TenantAccessRevoked(
                    f"Xero refused access to {connection.tenant_name or connection.tenant_id}; "
                    "the organisation may have been disconnected.",
                    connection_id=str(connection.id),
                )
            if response is not None and 400 <= response.status_code < 500:
                raise ProviderRejected(f"Xero refused the request ({xero_message(response)}).")
            failures += 1
            if failures >= self.retry.max_attempts:
                raise ProviderUnavailable(
                    f"Xero is unavailable ({problem} after {failures} attempts)."
                )
            delay = self.backoff(failures)
            logger.warning(
                "xero call failed; retrying",
                extra={
                    "path": path,
                    "problem": problem,
                    "attempt": failures,
                    "delay_s": round(delay, 2),
                },
            )
            await self.sleep(delay)


def _check_id_batch(ids: Sequence[str]) -> None:
    if not ids or len(ids) > MAX_IDS_PER_CALL:
        raise ValueError(f"between 1 and {MAX_IDS_PER_CALL} ids per call, not {len(ids)}")


def _unseen(page: XeroInvoicePage, overlap: dict[str, datetime]) -> list[tuple[Any, JsonText]]:
    """The page's invoices not already returned in the same version."""
    return [
        (invoice, raw)
        for invoice, raw in zip(page.invoices, page.raw, strict=True)
        if overlap.get(invoice.invoice_id) != invoice.updated_date_utc
    ]


def _is_last(page: XeroInvoicePage, page_size: int) -> bool:
    """A short page is the last; so is a full one when Xero's `pagination` says no page follows
    (that saves the call that would only confirm the end)."""
    return len(page.invoices) < page_size or (
        page.page_count is not None and page.page >= page.page_count
    )


def _page_of(
    page: XeroInvoicePage,
    fresh: list[tuple[Any, JsonText]],
    *,
    resume_from: datetime | None,
    remaining: int | None = None,
) -> XeroInvoicePage:
    return XeroInvoicePage(
        invoices=[i for i, _ in fresh],
        raw=[r for _, r in fresh],
        page=page.page,
        page_count=page.page_count,
        item_count=page.item_count,
        resume_from=resume_from,
        remaining=remaining,
        decode_s=page.decode_s,
    )


def _pause_for(seconds: float, detail: str, **extra: Any) -> ProviderRateLimited:
    seconds = min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)  # a resume time that exists
    resume_after = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
    return ProviderRateLimited(
        detail, retry_after_seconds=seconds, resume_after=resume_after, **extra
    )


def _retry_after(response: httpx.Response) -> float:
    """Xero's Retry-After in seconds, clamped to a day (a huge or garbled one must neither
    overflow a timestamp nor park a sync for years)."""
    return retry_after_seconds(response.headers.get("retry-after"))
