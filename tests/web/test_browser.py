"""The dashboard in real headless Chromium, against the real app served by uvicorn on
loopback: log in, see the account, start a sync, watch the live progress, disconnect.

The tab and its helpers (`Dashboard.login`, `Dashboard.screenshot`, ...) are in
tests/web/browser.py, shared with the longer scenarios (the end-to-end sync, the pages, the
problems).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from amosync.db.models import SyncRun, utcnow
from amosync.runtime.services import Services
from tests.servers import serving
from tests.web.browser import Dashboard, dashboard_tab
from tests.web.conftest import ACCOUNT_ID, account, add, contact, dashboard_app


@pytest.fixture
async def dashboard(browser: Any, services: Services, artifacts: Path) -> AsyncIterator[Dashboard]:
    async with (
        serving(dashboard_app(services)) as base_url,
        dashboard_tab(browser, base_url, artifacts) as tab,
    ):
        yield tab


async def update_run(services: Services, **values: Any) -> None:
    async with services.sessions() as session, session.begin():
        run = (await session.execute(select(SyncRun))).scalar_one()
        for name, value in values.items():
            setattr(run, name, value)


async def seed(services: Services) -> None:
    await add(
        services,
        account(),
        contact(1, name="Ann Lee", emails=["ann@example.com"]),
        contact(2, name="Bob Nomail", state="unsynced", emails=[], reason="no_email"),
    )


async def test_log_in_start_a_sync_and_watch_it_progress(
    dashboard: Dashboard, services: Services
) -> None:
    from playwright.async_api import expect

    page = dashboard.page
    await seed(services)
    await dashboard.open()
    await dashboard.screenshot("dashboard_login.png")

    await dashboard.login("not-the-token")
    await expect(page.locator("[data-role=login-error]")).to_be_visible()
    # The refused login is a 401 page, which Chromium reports on the console: expected.
    assert [p for p in dashboard.problems if "status of 401" not in p] == []
    dashboard.problems.clear()
    await dashboard.login()
    row = page.locator(f"tr[data-account-id='{ACCOUNT_ID}']")
    await expect(row.locator(".account-link")).to_have_text("Acme Ltd")
    await expect(row.locator("[data-count=synced]")).to_have_text("1")
    await expect(row.locator("[data-count=unsynced]")).to_have_text("1")
    await dashboard.screenshot("dashboard_overview.png")

    await dashboard.open_account()
    await expect(page.locator("tr[data-contact-id='1']")).to_contain_text("ann@example.com")
    await page.click("[data-action=sync-now]")
    await expect(page.locator("[data-notice]")).to_have_text("A full sync has been queued.")
    status = page.locator(".progress-block--detailed [data-field=status]")
    await expect(status).to_have_text("queued")

    # The worker's part, played by the test: the page must follow without a reload.
    await update_run(
        services,
        status="running",
        started_at=utcnow(),
        fetched=250,
        synced=100,
        unsynced=20,
        expected=400,
    )
    await expect(status).to_have_text("running")
    bar = page.locator(".progress-block--detailed [data-field=bar]")
    await expect(bar).to_have_attribute("value", "30")
    await expect(page.locator(".progress-block--detailed [data-field=synced]")).to_have_text("100")
    await expect(page.locator(".progress-block--detailed [data-field=fetched]")).to_have_text("250")
    await dashboard.screenshot("dashboard_sync_running.png")

    await update_run(services, status="done", finished_at=utcnow(), synced=380, unsynced=20)
    await expect(status).to_have_text("done")
    await expect(bar).to_have_attribute("value", "100")
    await expect(page.locator("[data-role=finished]")).to_be_visible()
    await dashboard.screenshot("dashboard_sync_done.png")

    await page.click("[data-tab=unsynced]")
    await expect(page.locator("tr[data-contact-id='2']")).to_contain_text("No e-mail address")


async def test_disconnect_after_confirming(dashboard: Dashboard, services: Services) -> None:
    from playwright.async_api import expect

    page = dashboard.page
    await seed(services)
    await dashboard.open(f"/ui/accounts/{ACCOUNT_ID}")
    # Asked to log in first, then brought back to the account.
    await dashboard.login()
    await expect(page.locator("[data-role=account-title]")).to_have_text("Acme Ltd")

    await page.click("[data-action=disconnect]")
    await expect(page.locator("h1")).to_have_text("Disconnect Acme Ltd?")
    await dashboard.screenshot("dashboard_disconnect_confirm.png")
    await page.click("[data-action=confirm-disconnect]")

    await expect(page.locator("[data-field=account-status]").first).to_have_text("disconnected")
    await expect(page.locator("[data-action=sync-now]")).to_have_count(0)
    await dashboard.screenshot("dashboard_disconnected.png")


async def test_an_ended_session_is_announced(dashboard: Dashboard, services: Services) -> None:
    from playwright.async_api import expect

    page = dashboard.page
    await seed(services)
    await add(services, SyncRun(account_id=ACCOUNT_ID, status="running", started_at=utcnow()))
    await dashboard.open(f"/ui/accounts/{ACCOUNT_ID}")
    await dashboard.login()
    banner = page.locator("[data-role=session-expired]")
    await expect(banner).to_be_hidden()

    await page.context.clear_cookies()  # as when the browser session ends

    await expect(banner).to_be_visible()
    # The refused poll is a 401, which Chromium reports on the console: expected.
    assert [p for p in dashboard.problems if "status of 401" not in p] == []
    dashboard.problems.clear()
