"""The system Chromium under Playwright, for every test that drives a real browser.

A missing or broken Chromium fails the test in CI, where it must be there, and skips it
elsewhere, so a developer without one still runs the rest.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest

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


def unavailable(message: str) -> NoReturn:
    """No usable browser here: a failure in CI, a skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _installed() -> None:
    if not CHROMIUM.exists():
        unavailable(
            "Chromium is not installed at /usr/bin/chromium; "
            "install it with: apt-get update && apt-get install -y chromium"
        )


def _options(args: tuple[str, ...]) -> dict[str, Any]:
    return {"executable_path": str(CHROMIUM), "args": [*CHROMIUM_ARGS, *args]}


@contextmanager
def _launching() -> Iterator[None]:
    """Any launch failure means: no usable browser here."""
    try:
        yield
    except Exception as exc:
        unavailable(f"Chromium could not start: {exc}")


@asynccontextmanager
async def chromium(*args: str) -> AsyncIterator[Any]:
    """Chromium launched with CHROMIUM_ARGS and `args`, for async Playwright."""
    _installed()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        with _launching():
            browser = await playwright.chromium.launch(**_options(args))
        try:
            yield browser
        finally:
            await browser.close()


@contextmanager
def chromium_sync(*args: str) -> Iterator[Any]:
    """Chromium launched with CHROMIUM_ARGS and `args`, for sync Playwright (the widget's
    tests are synchronous)."""
    _installed()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        with _launching():
            browser = playwright.chromium.launch(**_options(args))
        try:
            yield browser
        finally:
            browser.close()
