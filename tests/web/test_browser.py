"""The dashboard in real headless Chromium, against the real app served by uvicorn on
loopback: log in, see the account, start a sync, watch the live progress, disconnect.

Helpers (`serve_dashboard`, `Dashboard.login`, `Dashboard.screenshot`, ...) are meant for
longer scenarios too, e.g. a full sync against the sandbox reaching 100%.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import select

from amosync.db.models import SyncRun, utcnow
from amosync.runtime.services import Services
from tests.conftest import ADMIN_TOKEN
from tests.web.conftest import ACCOUNT_ID, account, add, contact, dashboard_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@asynccontextmanager
async def serve_dashboard(services: Services) -> AsyncIterator[str]:
    """The app (with `services`) under uvicorn on a free loopback port; yields its URL."""
    config = uvicorn.Config(
        dashboard_app(services), host="127.0.0.1", port=0, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises why it could not start
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(
            "Chromium is not installed at /usr/bin/chromium; "
            "install it with: apt-get update && apt-get install -y chromium"
        )
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        try:
            chromium = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
        except Exception as exc:  # any launch failure means: no usable browser here
            _unavailable(f"Chromium could not start: {exc}")
        yield chromium
        await chromium.close()


@dataclass
class Dashboard:
    """One browser tab on the dashboard, with what it complained about."""

    page: Any
    base_url: str
    artifacts: Path
    problems: list[str] = field(default_factory=list)

    async def open(self, path: str = "/") -> None:
        await self.page.goto(self.base_url + path)

    async def login(self, token: str = ADMIN_TOKEN) -> None:
        await self.page.fill("input[name=token]", token)
        await self.page.click("button[type=submit]")
        await self.page.wait_for_load_state()

    async def open_account(self, account_id: int = ACCOUNT_ID) -> None:
        await self.page.click(f"tr[data-account-id='{account_id}'] a.account-link")
        await self.page.wait_for_selector("[data-role=account-title]")

    async def screenshot(self, name: str) -> None:
        await self.page.screenshot(path=str(self.artifacts / name), full_page=True)


@pytest.fixture
async def dashboard(browser: Any, services: Services, artifacts: Path) -> AsyncIterator[Dashboard]:
    async with serve_dashboard(services) as base_url:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        tab = Dashboard(page=page, base_url=base_url, artifacts=artifacts)
        page.on("pageerror", lambda error: tab.problems.append(f"page error: {error}"))
        # CSP violations and failed loads are reported on the console as errors.
        page.on(
            "console",
            lambda message: (
                tab.problems.append(f"console: {message.text}") if message.type == "error" else None
            ),
        )
        yield tab
        await context.close()
    assert tab.problems == [], tab.problems


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
