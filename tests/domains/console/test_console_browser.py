"""The console in a real browser (Chromium through Playwright) against the service over real
HTTP and the Xero sandbox's consent page: sign in, connect two Xero organisations, sync now and
watch the progress reach 100%, open an invoice and its history, see a connection that needs
re-authorisation and re-authorise it, sign out; a member sees no admin buttons. A screenshot of
each page is saved under var/screenshots/console-<database>/ (gitignored)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from src.core.crypto import TokenCipher
from src.core.database import utcnow
from src.domains.console.models import ConsoleSession
from src.domains.external_accounting.connections.models import Connection, OAuthGrant
from src.domains.external_accounting.outbound.models import EventType
from src.domains.external_accounting.outbound.schemas import WebhookEndpointIn
from src.domains.external_accounting.outbound.service import WebhookEndpointService
from src.domains.external_accounting.xero.auth.auth_manager import XeroAuthManager
from src.domains.external_accounting.xero.auth.identity_client import XeroIdentityClient
from src.domains.external_accounting.xero.auth.keep_alive import keep_alive_pass
from src.domains.organizations.models import Role
from src.xero_sandbox.server import RunningSandbox
from tests.domains.console.browser import (
    CHROMIUM,
    CONSOLE_SANDBOX,
    SCREENSHOTS,
    ServedApp,
    app_port,
    console_settings,
)
from tests.factories import add_member, create_org_with_user
from tests.fixtures import clear_faults, inject_faults, invoices_url
from tests.xero_sandbox.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

MONEY = re.compile(r"^\d{1,3}(,\d{3})*(\.\d{2,4})?$")
MONEY_WITH_CODE = re.compile(r"^[A-Z]{3} \d{1,3}(,\d{3})*(\.\d{2,4})?$")


@pytest.fixture(scope="module")
def consent_sandbox() -> Iterator[RunningSandbox]:
    """A sandbox that shows its consent page (the session's sandbox auto-approves)."""
    with RunningSandbox(CONSOLE_SANDBOX) as running:
        yield running


@pytest.fixture(scope="module")
async def served(database_url: str, consent_sandbox: RunningSandbox) -> AsyncIterator[ServedApp]:
    port = app_port()
    served = ServedApp(console_settings(database_url, consent_sandbox.base_url, port), port)
    await served.start()
    yield served
    await served.stop()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium for the module: Debian's, never a download (scripts/test.sh installs it)."""
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: run scripts/test.sh (apt-get install chromium)"
    )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        await launched.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """Where the organisation's outbound webhooks go (it answers 200)."""
    with WebhookReceiver() as running:
        yield running


async def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def sign_in(page: Page, served: ServedApp, key: str) -> None:
    await page.goto(f"{served.base_url}/console")
    await expect(page).to_have_url(f"{served.base_url}/console/sign-in")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{served.base_url}/console/connections")


async def consent(page: Page, served: ServedApp, name: str) -> None:
    """At Xero's consent page (the sandbox's): allow both organisations, back to our callback."""
    await expect(
        page.get_by_role("heading", name="Allow access to your organisations?")
    ).to_be_visible()
    await shot(page, name)
    await page.get_by_role("button", name="Allow access").click()
    await expect(page.get_by_role("heading", name="Xero connected")).to_be_visible()


async def sync_to_the_end(
    page: Page, served: ServedApp, card_name: str, shot_name: str, *, watch: bool = False
) -> str:
    """Press Sync now on a connection's card and follow the progress bar to 100%; `watch`: the
    page is seen while the run is unfinished, so it is the page's polling (no reload) that
    brings it to 100%."""
    card = page.locator("article.connection", has=page.get_by_role("heading", name=card_name))
    await card.get_by_role("button", name="Sync now").click()
    await expect(page).to_have_url(re.compile(rf"{served.base_url}/console/runs/[0-9a-f-]+$"))
    progress = page.locator("#progress")
    if watch:
        await expect(progress).to_have_attribute("data-status", re.compile("^(queued|running)$"))
        await expect(progress).to_have_attribute("data-poll", re.compile("/progress$"))
        await shot(page, shot_name.replace("-100", "-running"))
    await expect(progress).to_have_attribute("data-status", "success", timeout=30_000)
    await expect(page.locator("progress")).to_have_attribute("value", "100")
    await expect(page.locator(".percent")).to_have_text("100%")
    await shot(page, shot_name)
    return page.url


async def test_the_console_end_to_end_in_chromium(
    served: ServedApp,
    consent_sandbox: RunningSandbox,
    browser: Browser,
    receiver: WebhookReceiver,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    organization, _, key = await create_org_with_user(session_factory, Role.ADMIN)
    member_key = await add_member(session_factory, organization, Role.MEMBER, "mia@acme.test")
    async with session_factory() as session:
        await WebhookEndpointService(
            session, served.settings, TokenCipher.from_settings(served.settings)
        ).create(
            organization.id,
            WebhookEndpointIn(
                url=receiver.url,
                event_types=[EventType.SYNC_FINISHED, EventType.CONNECTION_NEEDS_REAUTH],
            ),
        )
        await session.commit()
    context = await browser.new_context(viewport={"width": 1200, "height": 900})
    page = await context.new_page()

    # Sign in: the key goes into a password field, never into a URL; the cookie is HttpOnly.
    await page.goto(f"{served.base_url}/console/connections")
    await expect(page).to_have_url(f"{served.base_url}/console/sign-in")
    assert await page.get_by_label("API key").get_attribute("type") == "password"
    await shot(page, "01-sign-in")
    await sign_in(page, served, key)
    assert key not in page.url
    assert key not in await page.content()
    cookie = next(c for c in await context.cookies() if c["name"] == "ledgersync_console")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/console"
    await expect(page.get_by_text("No Xero organisation is connected yet")).to_be_visible()
    await shot(page, "02-no-connections")

    # Connect Xero: the connect link, the sandbox's consent page, our callback.
    await page.get_by_role("button", name="Connect Xero").click()
    await consent(page, served, "03-xero-consent")
    await shot(page, "04-xero-connected")
    await page.get_by_role("link", name="the ledgersync console").click()
    await expect(page).to_have_url(f"{served.base_url}/console/connections")
    cards = page.locator("article.connection")
    await expect(cards).to_have_count(2)
    await expect(page.locator('article.connection[data-status="active"]')).to_have_count(2)
    names = sorted(await page.locator("article.connection h2").all_inner_texts())
    await shot(page, "05-two-connections")

    # Sync now, in the background; the progress bar follows it to 100%.
    # Xero's first invoice page is slow to answer: the page shows the run unfinished first.
    inject_faults(consent_sandbox, path_contains="Invoices", next_slow=1, slow_seconds=2.0)
    run_url = await sync_to_the_end(page, served, names[0], "06-sync-progress-100", watch=True)
    clear_faults(consent_sandbox)
    await expect(page.locator(".pages")).not_to_have_text("0")
    await page.goto(f"{served.base_url}/console/connections")
    first = page.locator("article.connection", has=page.get_by_role("heading", name=names[0]))
    await expect(first.locator(".fresh")).to_contain_text("data just now")
    assert int((await first.locator(".calls-today").inner_text()).replace(",", "")) > 0
    await expect(first.locator("svg.chart rect.bar")).to_have_count(14)
    # This deployment follows no schedules (console_settings): the card says so, not "every 15".
    await expect(first.locator("dd.schedule")).to_contain_text("off for this deployment")
    await shot(page, "07-connections-after-sync")

    # Invoices: filter, open one, pay it in Xero, sync again: its history shows the change.
    await page.goto(f"{served.base_url}/console/invoices")
    await page.locator('select[name="status"]').select_option("AUTHORISED")
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(re.compile(r"status=AUTHORISED"))
    statuses = set(await page.locator("table.invoices td .status").all_inner_texts())
    assert statuses == {"AUTHORISED"}
    await expect(page.locator("svg.chart").first).to_be_visible()
    await shot(page, "08-invoices-authorised")
    await page.locator("table.invoices a").first.click()
    await expect(page.locator(".invoice-status")).to_have_text("AUTHORISED")
    xero_id = await page.locator("dd code").last.inner_text()
    async with session_factory() as session:
        tenant_id = (
            await session.execute(
                select(Connection.tenant_id).where(Connection.tenant_name == names[0])
            )
        ).scalar_one()
    paid = httpx.post(f"{invoices_url(consent_sandbox, tenant_id)}/{xero_id}/pay")
    assert paid.status_code == 200, paid.text
    invoice_url = page.url
    await page.goto(f"{served.base_url}/console/connections")
    second_run_url = await sync_to_the_end(page, served, names[0], "09-second-sync-100")
    assert second_run_url != run_url
    await page.goto(invoice_url)
    await expect(page.locator(".invoice-status")).to_have_text("PAID")
    await expect(page.locator("li.version")).to_have_count(2)
    change = page.locator("li.version").nth(1).locator("tr", has_text="status")
    await expect(change).to_contain_text("AUTHORISED")
    await expect(change).to_contain_text("PAID")
    await expect(page.locator("table.lines tbody tr").first).to_be_visible()
    # Money in the currency's minor units with separators, as Xero shows it (not "1180.7800").
    await expect(page.locator(".invoice-total")).to_have_text(MONEY_WITH_CODE)
    due = page.locator("li.version").nth(1).locator("tr", has_text="amount_due")
    await expect(due.locator("td").nth(1)).to_have_text(MONEY)
    await expect(due.locator("td").nth(2)).to_have_text(re.compile(r"^0(\.00)?$"))
    await shot(page, "10-invoice-history")

    # Xero refuses our refresh token: both connections need re-authorisation; re-authorise.
    await revoke_at_xero_and_refresh(served, consent_sandbox, session_factory)
    await page.goto(f"{served.base_url}/console/connections")
    await expect(page.locator('article.connection[data-status="needs_reauth"]')).to_have_count(2)
    await expect(page.get_by_text("needs re-authorisation").first).to_be_visible()
    await shot(page, "11-needs-reauthorisation")
    reauth = page.locator('article.connection[data-status="needs_reauth"]').first
    await reauth.get_by_role("button", name="Re-authorise").click()
    await consent(page, served, "12-reauthorise-consent")
    await page.goto(f"{served.base_url}/console/connections")
    await expect(page.locator('article.connection[data-status="active"]')).to_have_count(2)
    await shot(page, "13-reauthorised")

    # The runs list and the admin's webhook page.
    await page.goto(f"{served.base_url}/console/runs")
    await expect(page.locator("table.grid tbody tr")).to_have_count(2)
    await shot(page, "14-runs")
    # The delivery log: two sync.finished and two connection.needs_reauth, delivered to the
    # receiver (the dispatcher ticks every second here).
    await page.goto(f"{served.base_url}/console/webhooks")
    await expect(page.get_by_role("heading", name="Outbound webhooks")).to_be_visible()
    delivered = page.locator("table.deliveries tr", has_text="delivered")
    for _ in range(40):
        if await delivered.count() == 4:
            break
        await page.wait_for_timeout(500)
        await page.reload()
    await expect(delivered).to_have_count(4)
    await expect(page.locator("table.deliveries", has_text="HTTP 200")).to_be_visible()
    assert len(receiver.received) == 4
    await shot(page, "15-webhooks")

    # Disconnect asks first.
    await page.goto(f"{served.base_url}/console/connections")
    last = page.locator("article.connection", has=page.get_by_role("heading", name=names[1]))
    await last.get_by_role("link", name="Disconnect").click()
    await expect(page.get_by_role("heading", name=f"Disconnect {names[1]}?")).to_be_visible()
    await shot(page, "16-disconnect-confirm")
    await page.get_by_role("button", name="Yes, disconnect").click()
    gone = page.locator('article.connection[data-status="disconnected"]')
    await expect(gone).to_have_count(1)
    # It says so, and shows no schedule or daily-limit chart: neither applies any more.
    await expect(gone.locator(".problem")).to_contain_text("no longer synced")
    await expect(gone.locator("svg.chart")).to_have_count(0)

    # Sign out: the session row is gone, so the same cookie in another browser opens nothing
    # (before the sign-out it opens the console there: the check below is not vacuous).
    session_cookie = next(c for c in await context.cookies() if c["name"] == "ledgersync_console")
    replay = await browser.new_context()
    await replay.add_cookies(
        [
            {
                "name": session_cookie["name"],
                "value": session_cookie["value"],
                "domain": "127.0.0.1",
                "path": "/console",
                "httpOnly": True,
                "sameSite": "Lax",
            }
        ]
    )
    replayed = await replay.new_page()
    await replayed.goto(f"{served.base_url}/console/runs")
    await expect(replayed).to_have_url(f"{served.base_url}/console/runs")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(f"{served.base_url}/console/sign-in")
    await shot(page, "17-signed-out")
    await replayed.goto(f"{served.base_url}/console/runs")
    await expect(replayed).to_have_url(f"{served.base_url}/console/sign-in")
    await replay.close()
    await context.close()

    # A member sees and syncs, but has no admin button, and an admin's form is refused.
    member = await browser.new_context(viewport={"width": 1200, "height": 900})
    mpage = await member.new_page()
    await sign_in(mpage, served, member_key)
    await expect(mpage.get_by_role("button", name="Sync now")).to_have_count(1)
    for admin_only in ("Connect Xero", "Re-authorise", "Yes, disconnect"):
        await expect(mpage.get_by_role("button", name=admin_only)).to_have_count(0)
    await expect(mpage.get_by_role("link", name="Disconnect")).to_have_count(0)
    await expect(mpage.get_by_role("link", name="Webhooks")).to_have_count(0)
    await shot(mpage, "18-member-connections")
    csrf = await mpage.locator('input[name="csrf_token"]').first.get_attribute("value")
    refused = await mpage.request.post(
        f"{served.base_url}/console/connect", form={"csrf_token": csrf or ""}, max_redirects=0
    )
    assert refused.status == 403
    webhooks = await mpage.goto(f"{served.base_url}/console/webhooks")
    assert webhooks is not None
    assert webhooks.status == 403
    await shot(mpage, "19-member-refused-webhooks")
    await member.close()
    async with session_factory() as session:
        remaining = (
            await session.execute(select(func.count()).select_from(ConsoleSession))
        ).scalar_one()
    assert remaining == 1  # the member's; the admin's ended at sign-out


async def revoke_at_xero_and_refresh(
    served: ServedApp,
    sandbox: RunningSandbox,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """The customer revokes our access at Xero; the next refresh (the keep-alive pass, a day
    past its idle threshold) hears `invalid_grant` and marks the connections."""
    settings = served.settings
    cipher = TokenCipher.from_settings(settings)
    async with session_factory() as session:
        grant = (await session.execute(select(OAuthGrant))).scalar_one()
    refresh_token = cipher.decrypt(grant.refresh_token_encrypted or "")
    async with httpx.AsyncClient() as xero:
        revoked = await xero.post(
            f"{sandbox.base_url}/connect/revocation",
            data={"token": refresh_token},
            auth=(settings.xero_client_id, settings.xero_client_secret.get_secret_value()),
        )
        revoked.raise_for_status()
        manager = XeroAuthManager(
            settings, session_factory, XeroIdentityClient(xero, settings), cipher
        )
        later = utcnow() + timedelta(days=settings.token_keepalive_days + 1)
        report = await keep_alive_pass(session_factory, manager, settings, now=later)
    assert report.needs_reauth == [str(grant.id)]
