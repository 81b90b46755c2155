"""The dashboard end to end in real headless Chromium, against the real stack: the sandbox
(amoCRM + Unisender simulators) and the service over HTTP, an account installed through the
real install flow, a first full sync of ~2000 contacts run by a worker in this event loop
while the browser watches its progress, unsynced contacts with their reasons, and a
disconnect that unregisters the account's webhooks at amoCRM.

Screenshots of every step go to tests/artifacts/e2e_*.png.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import select

from amosync.db.models import AppliedHour
from amosync.worker.runner import Worker
from tests.stack import ACCOUNT_ID, UNISENDER_KEY, Stack, stack
from tests.web.browser import Dashboard, dashboard_tab

GENERATED = 2000
DETAILED = ".progress-block--detailed"


class BackgroundWorker:
    """A worker started on demand in this event loop (the stack's service has none)."""

    def __init__(self, s: Stack) -> None:
        self.runner = Worker(s.services)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        assert self.task is None, "the worker is already running"
        self.task = asyncio.create_task(self.runner.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.runner.stop()
            await asyncio.wait_for(self.task, timeout=15)


async def prepare(s: Stack) -> dict[str, int]:
    """An installed account with known contacts and ~2000 generated ones; returns the known
    contacts' ids by role. The first sync is queued (Unisender connected), not run yet."""
    await s.install()
    amo = s.sandbox.amocrm
    known = {
        "ann": amo.add_contact(ACCOUNT_ID, name="Ann Lee", emails=["ann@example.com"])["id"],
        "two": amo.add_contact(
            ACCOUNT_ID, name="Boris Two", emails=["boris@example.com", "b.two@example.org"]
        )["id"],
        "phone": amo.add_contact(ACCOUNT_ID, name="Phone Only", phones=["+79990000001"])["id"],
        "nothing": amo.add_contact(ACCOUNT_ID, name="No Fields")["id"],
        "invalid": amo.add_contact(ACCOUNT_ID, name="Bad Address", emails=["not-an-address"])["id"],
    }
    # The add_contact webhooks reach the service and are processed before the sync.
    await amo.flush_webhooks()
    await s.settle()
    amo.generate_contacts(ACCOUNT_ID, GENERATED, seed=7)
    # Slow enough (~10 amoCRM pages) for the browser to see the sync running.
    amo.latency = 0.3
    s.sandbox.unisender.latency = 0.05
    await s.connect_unisender()
    return known


async def test_full_sync_watched_in_the_browser_then_disconnect(
    database_url: str, browser: Any, artifacts: Path
) -> None:
    async with stack(database_url) as s:
        known = await prepare(s)
        assert s.sandbox.amocrm.webhooks(ACCOUNT_ID), "the install registered no webhook"

        background = BackgroundWorker(s)
        try:
            async with dashboard_tab(browser, s.url, artifacts) as dashboard:
                await log_in_and_open_the_account(dashboard)
                await watch_the_first_sync(s, dashboard, background, total=GENERATED + len(known))
                await see_the_contacts(dashboard, known)
                await disconnect(dashboard)
        finally:
            await background.stop()

        # amoCRM no longer posts anything for this account; its Unisender list is untouched.
        assert s.sandbox.amocrm.webhooks(ACCOUNT_ID) == []
        [listed] = s.sandbox.unisender.lists(UNISENDER_KEY)
        members = s.sandbox.unisender.list_members(UNISENDER_KEY, listed["id"])
        assert {"ann@example.com", "boris@example.com", "b.two@example.org"} <= members
        assert "not-an-address" not in members


async def log_in_and_open_the_account(dashboard: Dashboard) -> None:
    from playwright.async_api import expect

    page = dashboard.page
    await dashboard.open()
    await expect(page.locator("input[name=token]")).to_be_visible()
    await dashboard.screenshot("e2e_login.png")
    await dashboard.login()

    row = page.locator(f"tr[data-account-id='{ACCOUNT_ID}']")
    await expect(row.locator(".account-link")).to_have_text("Acme")
    await expect(row.locator("[data-field=account-status]")).to_have_text("active")
    await expect(row.locator("[data-field=unisender]")).to_have_text("Unisender connected")
    # Connecting Unisender queued the first sync.
    await expect(row.locator("[data-field=status]")).to_have_text("queued")
    await dashboard.screenshot("e2e_overview.png")

    await dashboard.open_account()
    await expect(page.locator("[data-role=account-title]")).to_have_text("Acme")


async def watch_the_first_sync(
    s: Stack, dashboard: Dashboard, background: BackgroundWorker, total: int
) -> None:
    from playwright.async_api import expect

    page = dashboard.page
    status = page.locator(f"{DETAILED} [data-field=status]")
    await expect(status).to_have_text("queued")
    # "Sync now" while the first sync is queued joins it: one active sync per account.
    await page.click("[data-action=sync-now]")
    await expect(page.locator("[data-notice]")).to_contain_text("already running")
    await expect(status).to_have_text("queued")
    # Still the one run the Unisender connection queued (ids are shared by the whole test
    # database, so ask the service which one that is).
    queued = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()["last_sync"]
    await expect(page.locator(f"{DETAILED} [data-field=run-id]")).to_have_text(
        f"run #{queued['run_id']}"
    )

    background.start()
    # The page follows the run without a reload (the dashboard script polls).
    await expect(status).to_have_text("running")
    await dashboard.screenshot("e2e_sync_running.png")

    await expect(status).to_have_text("done", timeout=30_000)
    await expect(page.locator(f"{DETAILED} [data-field=bar]")).to_have_attribute("value", "100")
    await expect(page.locator(f"{DETAILED} [data-field=percent]")).to_have_text("100%")
    await expect(page.locator(f"{DETAILED} [data-field=fetched]")).to_have_text(f"{total:,}")
    await expect(page.locator("[data-role=finished]")).to_be_visible()
    # The "already running" notice spoke of a run that is over.
    await expect(page.locator("[data-notice]")).to_be_hidden()

    # What the page shows is what the service counted, tab counters included.
    counts = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()["contacts"]
    assert counts["synced"] + counts["unsynced"] == total
    for state in ("synced", "unsynced"):
        shown = f"{counts[state]:,}"
        await expect(page.locator(f"{DETAILED} [data-field={state}]")).to_have_text(shown)
        await expect(page.locator(f"[data-tab={state}] [data-count={state}]")).to_have_text(shown)
    await expect(page.locator("[data-empty=contacts]")).to_contain_text("reload to see them")
    # Every applied contact was counted for the hourly chart, where it was applied.
    async with s.services.sessions() as session:
        hours = (await session.execute(select(AppliedHour))).scalars().all()
    assert sum(h.synced for h in hours) >= counts["synced"]
    assert sum(h.unsynced for h in hours) >= counts["unsynced"]
    await page.wait_for_timeout(500)  # the bar's 0.4 s transition, for the screenshot
    await dashboard.screenshot("e2e_sync_done.png")


async def see_the_contacts(dashboard: Dashboard, known: dict[str, int]) -> None:
    from playwright.async_api import expect

    page = dashboard.page
    await page.click("[data-role=finished] a")  # "Reload to see the contacts"
    synced = page.locator("table[data-state=synced]")
    await expect(synced.locator(f"tr[data-contact-id='{known['ann']}']")).to_contain_text(
        "ann@example.com"
    )
    await expect(synced.locator(f"tr[data-contact-id='{known['two']}']")).to_contain_text(
        "b.two@example.org"
    )
    await expect(page.locator("[data-notice]")).to_have_count(0)  # the reload dropped it

    await page.click("[data-tab=unsynced]")
    unsynced = page.locator("table[data-state=unsynced]")
    await expect(unsynced).to_be_visible()
    reasons = {
        "phone": ("no_email", "No e-mail address"),
        "nothing": ("no_email", "No e-mail address"),
        "invalid": ("invalid_email", "Invalid e-mail address"),
    }
    for role, (code, text) in reasons.items():
        reason = unsynced.locator(f"tr[data-contact-id='{known[role]}'] [data-reason]")
        await expect(reason).to_have_attribute("data-reason", code)
        await expect(reason).to_have_text(text)
    for role in ("ann", "two"):
        await expect(unsynced.locator(f"tr[data-contact-id='{known[role]}']")).to_have_count(0)
    await dashboard.screenshot("e2e_unsynced.png")


async def disconnect(dashboard: Dashboard) -> None:
    from playwright.async_api import expect

    page = dashboard.page
    await page.click("[data-action=disconnect]")
    await expect(page.locator("h1")).to_have_text("Disconnect Acme?")
    await dashboard.screenshot("e2e_disconnect_confirm.png")
    await page.click("[data-action=confirm-disconnect]")

    await expect(page.locator("[data-notice]")).to_contain_text("disconnected")
    await expect(page.locator("[data-field=account-status]").first).to_have_text("disconnected")
    await expect(page.locator("[data-action=sync-now]")).to_have_count(0)
    await dashboard.screenshot("e2e_disconnected.png")

    await page.click(".crumbs a")  # back to the accounts
    row = page.locator(f"tr[data-account-id='{ACCOUNT_ID}']")
    await expect(row.locator("[data-field=account-status]")).to_have_text("disconnected")
    await expect(row.locator("[data-field=unisender]")).to_have_text("Unisender not connected")
    await dashboard.screenshot("e2e_overview_disconnected.png")
