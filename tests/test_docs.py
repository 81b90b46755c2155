"""/docs and /redoc render in headless Chromium with the network off: their scripts and
styles are served by the app itself, not fetched from a CDN."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from amosync.app import create_app
from amosync.db.migrate import upgrade_async
from amosync.runtime.services import build_services
from tests.browser import chromium
from tests.conftest import make_settings
from tests.servers import serving

ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture
async def offline_page(tmp_path: Path) -> AsyncIterator[tuple[Any, str, list[str]]]:
    """A Chromium tab on the app, every request not for 127.0.0.1 refused (and recorded)."""
    url = f"sqlite:///{tmp_path / 'amosync.db'}"
    await upgrade_async(url)
    services = build_services(make_settings(url))
    app = create_app(services=services, migrate=False, worker=False)
    blocked: list[str] = []

    async def offline(route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            blocked.append(route.request.url)
            await route.abort("internetdisconnected")

    try:
        async with serving(app) as base, chromium() as browser:
            context = await browser.new_context()
            await context.route("**/*", offline)
            page = await context.new_page()
            yield page, base, blocked
    finally:
        await services.aclose()


async def test_swagger_ui_renders_the_operations_offline(
    offline_page: tuple[Any, str, list[str]],
) -> None:
    page, base, blocked = offline_page
    await page.goto(f"{base}/docs")
    await page.wait_for_selector(".opblock", timeout=15_000)
    paths = await page.locator(".opblock-summary-path").all_inner_texts()
    assert len(paths) > 20
    assert any("/accounts/{account_id}" in path.replace("\u200b", "") for path in paths)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "docs_swagger_offline.png"))
    assert blocked == []


async def test_redoc_renders_the_operations_offline(
    offline_page: tuple[Any, str, list[str]],
) -> None:
    page, base, blocked = offline_page
    await page.goto(f"{base}/redoc")
    await page.wait_for_selector("[data-section-id^='tag/']", timeout=15_000)
    text = await page.inner_text("body")
    assert "/accounts/{account_id}" in text
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "docs_redoc_offline.png"))
    assert blocked == []
