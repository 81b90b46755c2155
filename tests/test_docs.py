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


@pytest.fixture
async def offline_page(tmp_path: Path) -> AsyncIterator[tuple[Any, str]]:
    """A Chromium tab on the app and the app's URL; every request not for 127.0.0.1 is
    refused, and fails the test once it ends."""
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
            yield page, base
    finally:
        await services.aclose()
    assert blocked == []


async def shown(offline: tuple[Any, str], path: str, ready: str, shot: Path) -> Any:
    """The page at `path` once `ready` is on it, its screenshot taken."""
    page, base = offline
    await page.goto(f"{base}{path}")
    await page.wait_for_selector(ready, timeout=15_000)
    await page.screenshot(path=str(shot))
    return page


async def test_swagger_ui_renders_the_operations_offline(
    offline_page: tuple[Any, str], artifacts: Path
) -> None:
    page = await shown(offline_page, "/docs", ".opblock", artifacts / "docs_swagger_offline.png")
    paths = await page.locator(".opblock-summary-path").all_inner_texts()
    assert len(paths) > 20
    assert any("/accounts/{account_id}" in path.replace("\u200b", "") for path in paths)


async def test_redoc_renders_the_operations_offline(
    offline_page: tuple[Any, str], artifacts: Path
) -> None:
    shot = artifacts / "docs_redoc_offline.png"
    page = await shown(offline_page, "/redoc", "[data-section-id^='tag/']", shot)
    assert "/accounts/{account_id}" in await page.inner_text("body")
