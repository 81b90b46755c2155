"""The dashboard in headless Chromium, in Russian and in English, on a desktop and at a
phone's width: the language follows the browser and the switch, every visible string is
translated, the tables hold on a phone, run history and the hourly chart render with data,
and the CSV export downloads the filtered unsynced contacts.

Screenshots go to tests/artifacts/pages_*.png.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from amosync.db.models import AppliedHour, Integration, SyncRun, WebhookEvent, utcnow
from amosync.runtime.services import Services
from amosync.sync.activity import hour_of
from tests.conftest import ADMIN_TOKEN
from tests.servers import serving
from tests.web.browser import Dashboard, dashboard_tab, no_sideways_scroll, visible_english
from tests.web.conftest import ACCOUNT_ID, account, add, contact, dashboard_app, failed_job

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
LONG_ERROR = (
    "unisender: service unavailable status=503 body=<html><head><title>503 Service "
    "Temporarily Unavailable</title></head><body>upstream timed out after 30 s</body></html>"
)


@asynccontextmanager
async def tab(
    browser: Any, services: Services, artifacts: Path, *, locale: str, viewport: dict[str, int]
) -> AsyncIterator[Dashboard]:
    async with (
        serving(dashboard_app(services)) as base_url,
        dashboard_tab(
            browser, base_url, artifacts, viewport=viewport, locale=locale, accept_downloads=True
        ) as dashboard,
    ):
        yield dashboard


async def seed(services: Services) -> None:
    """An account with a day of activity, a history of runs (one failed before it fetched
    anything), synced and unsynced contacts of several reasons, webhooks and a failed job."""
    now = utcnow()
    rows: list[Any] = [
        account(unisender_key_enc=services.cipher.encrypt("k"), unisender_valid=True, list_id=7),
        account(2, name="Globex", subdomain="globex", status="reauth_required"),
        Integration(
            account_id=ACCOUNT_ID,
            client_id="7f8e2a1c-0000-4000-8000-00000000c11d",
            base_url="https://acme.amocrm.ru",
            webhook_registered=True,
        ),
    ]
    rows += [contact(i, name=f"Synced {i}") for i in range(1, 6)]
    rows += [
        contact(100 + i, "unsynced", name=f"Nomail {i}", emails=[], reason="no_email")
        for i in range(6)
    ]
    rows += [
        contact(200, "unsynced", name="=HYPERLINK(1)", emails=["x@bad"], reason="invalid_email"),
        contact(
            201,
            "unsynced",
            name="Rejected Ann",
            emails=["ann@blocked.example"],
            reason="unisender:blocked",
            detail="the address is on Unisender's stop list",
        ),
    ]
    rows += [
        SyncRun(
            account_id=ACCOUNT_ID,
            status="done",
            fetched=1250,
            synced=1200,
            unsynced=50,
            expected=1250,
            started_at=now - timedelta(hours=20),
            finished_at=now - timedelta(hours=19, minutes=58),
        ),
        SyncRun(
            account_id=ACCOUNT_ID,
            status="failed",
            error="Unisender refused the API key (invalid_api_key): connect a valid key",
            started_at=now - timedelta(hours=2),
            finished_at=now - timedelta(hours=2),
        ),
        SyncRun(
            account_id=2,
            status="failed",
            error="amoCRM refused the tokens: install the widget again",
            started_at=now - timedelta(hours=1),
            finished_at=now - timedelta(hours=1),
        ),
    ]
    current = hour_of(now)
    for ago, (synced, unsynced, deleted) in {
        20: (1200, 50, 0),
        6: (40, 3, 2),
        3: (15, 0, 5),
        0: (7, 1, 0),
    }.items():
        rows.append(
            AppliedHour(
                account_id=ACCOUNT_ID,
                hour=current - timedelta(hours=ago),
                synced=synced,
                unsynced=unsynced,
                deleted=deleted,
            )
        )
    rows += [
        WebhookEvent(account_id=ACCOUNT_ID, received_at=now - timedelta(minutes=m), added=m)
        for m in (1, 5)
    ]
    rows.append(failed_job(last_error=LONG_ERROR))
    await add(services, *rows)


async def cells_fit(page: Any, selector: str) -> None:
    """Every cell of `selector` is at least a few letters wide (none squeezed to one)."""
    widths = await page.eval_on_selector_all(
        f"{selector} td", "cells => cells.map(c => c.getBoundingClientRect().width)"
    )
    assert widths
    assert min(widths) >= 40, widths


async def test_in_russian_by_the_browser_language(
    browser: Any, services: Services, artifacts: Path
) -> None:
    from playwright.async_api import expect

    await seed(services)
    async with tab(browser, services, artifacts, locale="ru-RU", viewport=DESKTOP) as dashboard:
        page = dashboard.page
        await dashboard.open()
        await expect(page.locator("html")).to_have_attribute("lang", "ru")
        await expect(page.locator("h1")).to_have_text("Вход")
        assert await visible_english(page) == []
        await dashboard.screenshot("pages_ru_login.png")
        await dashboard.login(ADMIN_TOKEN)

        row = page.locator(f"tr[data-account-id='{ACCOUNT_ID}']")
        await expect(row.locator("[data-field=account-status]")).to_have_text("активен")
        await expect(row.locator("[data-field=unisender]")).to_have_text("Unisender подключён")
        await expect(page.locator("table[data-table=failed-jobs]")).to_contain_text("Повторить")
        # The status cell keeps the row's borders: it is still a table cell.
        display = await row.locator("td").nth(1).evaluate("c => getComputedStyle(c).display")
        assert display == "table-cell"
        await cells_fit(page, "table[data-table=failed-jobs]")
        assert await visible_english(page) == []
        await dashboard.screenshot("pages_ru_overview.png")

        await dashboard.open_account()
        await expect(page.locator("section#runs h2")).to_have_text("История запусков")
        runs = page.locator("table[data-table=runs] tbody tr")
        await expect(runs).to_have_count(2)
        # A failed run that fetched nothing shows an empty bar, not a full one.
        await expect(runs.first.locator("[data-field=status]")).to_have_text("ошибка")
        bar = page.locator(".progress-block--detailed [data-field=bar]")
        await expect(bar).to_have_attribute("value", "0")
        chart = page.locator("[data-role=chart]")
        await expect(chart).to_have_attribute(
            "data-total", str(1200 + 50 + 40 + 3 + 2 + 15 + 5 + 8)
        )
        await expect(chart.locator("[data-total-series=synced]")).to_have_text("1 262")
        assert await chart.locator("rect[data-series]").count() == 9
        await page.click("[data-tab=unsynced]")
        await expect(page.locator("[data-reason-filter]")).to_have_count(4)
        await expect(page.locator("tr[data-contact-id='201'] [data-reason]")).to_have_text(
            "Отклонён Unisender (blocked)"
        )
        assert await visible_english(page) == []
        await dashboard.screenshot("pages_ru_account.png")


async def test_the_switch_changes_the_language_and_sticks(
    browser: Any, services: Services, artifacts: Path
) -> None:
    from playwright.async_api import expect

    await seed(services)
    async with tab(browser, services, artifacts, locale="en-US", viewport=DESKTOP) as dashboard:
        page = dashboard.page
        await dashboard.open(f"/ui/accounts/{ACCOUNT_ID}?contacts=unsynced")
        await dashboard.login(ADMIN_TOKEN)
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        await expect(page.locator("section#runs h2")).to_have_text("Run history")
        await dashboard.screenshot("pages_en_account.png")

        await page.click("[data-action=switch-language]")
        await expect(page.locator("html")).to_have_attribute("lang", "ru")
        # The same page, with its filters.
        await expect(page.locator("[data-tab=unsynced]")).to_have_attribute("aria-current", "page")
        await page.click(".crumbs a")
        await expect(page.locator("h1")).to_have_text("Аккаунты")  # the cookie keeps it

        await page.click("[data-action=switch-language]")
        await expect(page.locator("h1")).to_have_text("Accounts")


async def test_at_a_phone_width_nothing_is_cut_off(
    browser: Any, services: Services, artifacts: Path
) -> None:
    from playwright.async_api import expect

    await seed(services)
    for locale, lang in (("ru-RU", "ru"), ("en-US", "en")):
        async with tab(browser, services, artifacts, locale=locale, viewport=PHONE) as dashboard:
            page = dashboard.page
            await dashboard.open()
            await dashboard.login(ADMIN_TOKEN)
            await expect(page.locator("html")).to_have_attribute("lang", lang)
            await dashboard.screenshot(f"pages_{lang}_phone_overview.png")
            await no_sideways_scroll(page)
            # Tables reflow into one card per row.
            row = page.locator(f"tr[data-account-id='{ACCOUNT_ID}']")
            box = await row.bounding_box()
            assert box is not None
            assert box["x"] >= 0
            assert box["x"] + box["width"] <= PHONE["width"]
            retry = page.locator("[data-action=retry-job]").first
            await retry.scroll_into_view_if_needed()
            assert (await retry.bounding_box() or {}).get("width", 0) > 30

            await dashboard.open_account()
            await dashboard.screenshot(f"pages_{lang}_phone_account.png")
            # Parts at their real size, to look at (a full page at phone width is very tall).
            for part, selector in {
                "sync": ".progress-block--detailed",
                "chart": "[data-role=chart]",
                "runs": "table[data-table=runs]",
                "jobs": "table[data-table=failed-jobs]",
            }.items():
                shot = artifacts / f"pages_{lang}_phone_part_{part}.png"
                await page.locator(selector).screenshot(path=str(shot))
            await no_sideways_scroll(page)
            await expect(page.locator("[data-role=chart] svg")).to_be_visible()
            chart = await page.locator("[data-role=chart] svg").bounding_box()
            assert chart is not None
            assert chart["width"] <= PHONE["width"]
            await page.click("[data-tab=unsynced]")
            await dashboard.screenshot(f"pages_{lang}_phone_unsynced.png")
            await no_sideways_scroll(page)


async def test_csv_export_downloads_the_filtered_unsynced_rows(
    browser: Any, services: Services, artifacts: Path
) -> None:
    from playwright.async_api import expect

    await seed(services)
    async with tab(browser, services, artifacts, locale="en-US", viewport=DESKTOP) as dashboard:
        page = dashboard.page
        await dashboard.open(f"/ui/accounts/{ACCOUNT_ID}?contacts=unsynced")
        await dashboard.login(ADMIN_TOKEN)
        await page.click("[data-reason-filter=no_email]")
        rows = page.locator("table[data-state=unsynced] tbody tr")
        await expect(rows).to_have_count(6)
        link = page.locator("tr[data-contact-id='100'] [data-role=amocrm-link]")
        await expect(link).to_have_attribute("href", "https://acme.amocrm.ru/contacts/detail/100")
        await dashboard.screenshot("pages_en_unsynced_filtered.png")

        async with page.expect_download() as download_info:
            await page.click("[data-action=export-csv]")
        download = await download_info.value
        assert download.suggested_filename == f"amosync-{ACCOUNT_ID}-unsynced-no_email.csv"
        text = Path(await download.path()).read_text(encoding="utf-8-sig")
        table = list(csv.DictReader(io.StringIO(text)))
        assert [int(r["amocrm_id"]) for r in table] == list(range(100, 106))
        assert {r["reason"] for r in table} == {"no_email"}
        assert table[0]["amocrm_url"] == "https://acme.amocrm.ru/contacts/detail/100"
