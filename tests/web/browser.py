"""The dashboard in a browser tab: what the browser tests click, the tab that fails its
test when the page threw or logged an error (a CSP violation, a failed load), and the checks
every page passes (no untranslated English, no sideways scroll on a phone)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import ADMIN_TOKEN
from tests.web.conftest import ACCOUNT_ID

TIMEOUT_MS = 10_000
DESKTOP = {"width": 1280, "height": 900}

# Words that are names, not English: they stay as they are on a Russian page.
NAMES = {
    "amosync",
    "amocrm",
    "unisender",
    "api",
    "csv",
    "utc",
    "e-mail",
    "amosync_amocrm_base_url",
    "acme",
    "ltd",
    "globex",
    "https",
    "http",
    "id",
    "post",
    "accounts",
    # Unisender's own code of a rejected address, shown as the code (test_browser_pages).
    "blocked",
}


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


@asynccontextmanager
async def dashboard_tab(
    browser: Any, base_url: str, artifacts: Path, **options: Any
) -> AsyncIterator[Dashboard]:
    """A fresh tab on the dashboard at `base_url` (`options` for its browser context, a
    desktop viewport unless given); the test fails if the page reported errors."""
    context = await browser.new_context(**{"viewport": DESKTOP, **options})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    dashboard = Dashboard(page=page, base_url=base_url, artifacts=artifacts)
    page.on("pageerror", lambda error: dashboard.problems.append(f"page error: {error}"))
    # CSP violations and failed loads are reported on the console as errors.
    page.on(
        "console",
        lambda message: (
            dashboard.problems.append(f"console: {message.text}")
            if message.type == "error"
            else None
        ),
    )
    try:
        yield dashboard
    finally:
        await context.close()
    assert dashboard.problems == [], dashboard.problems


async def visible_english(page: Any) -> list[str]:
    """Latin words on the page that are not names or codes: untranslated text. What the
    page marks `data-raw` (account and contact data, upstream error messages), code (`.mono`:
    settings, commands, ids) and the switch to the other language are not ours to
    translate."""
    text = await page.evaluate(
        """() => {
            const copy = document.body.cloneNode(true);
            copy.querySelectorAll("[data-raw], [hidden], .mono, [lang]").forEach(el => el.remove());
            return copy.innerText;
        }"""
    )
    # Addresses, links, ids and snake_case codes or settings are not words.
    text = re.sub(r"\S+@\S+|https?://\S+|#\d+|\b[a-z]+(?:_[a-z]+)+\b", " ", text, flags=re.I)
    words = [w.strip("-") for w in re.findall(r"[A-Za-z][A-Za-z-]*", text)]
    return sorted({w for w in words if w.lower() not in NAMES and not re.search(r"\d", w)})


async def no_sideways_scroll(page: Any) -> None:
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page is {overflow}px wider than the screen"
