"""The widget's stand: amoCRM's part of the page (harness/) with the widget built for a
service, served at an amoCRM account's origin, and the tab a test drives on it.

The fixtures that start Chromium, the service and the stand are in tests/widget/conftest.py.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from itertools import count
from pathlib import Path
from typing import Any

from amosync.widget.build import build_widget, support_contacts
from tests.widget.servers import route_stand

# The page is https://acme.amocrm.ru and the service, here, a loopback port: Chromium asks
# the user before a public page may call a local address. In amoCRM the service is a public
# https host, which needs no such permission.
LOCAL_NETWORK_ALLOWED = "--disable-features=LocalNetworkAccessChecks"
HARNESS = Path(__file__).parent / "harness"
SOURCE_I18N = Path(__file__).parents[2] / "src" / "amosync" / "widget" / "src" / "i18n"
ARTIFACTS = Path(__file__).parents[1] / "artifacts"
SUPPORT_EMAIL = "help@amosync-operator.example"
SUPPORT_URL = "https://help.amosync-operator.example/widget"
DESKTOP = {"width": 720, "height": 900}
PHONE = {"width": 375, "height": 812}
CONTACTS = [
    ("Анна Иванова", ["anna@example.com"]),
    ("Boris Petrov", ["boris@example.com", "b@work.example"]),
    ("No Address", []),
]
GOOD_KEY = "widget-test-unisender-key-0001"
accounts = count(41000001)


def text(lang: str, key: str) -> str:
    """A widget string from the i18n file, so the tests follow the wording."""
    value: Any = json.loads((SOURCE_I18N / f"{lang}.json").read_text(encoding="utf-8"))
    for part in key.split("."):
        value = value[part]
    assert isinstance(value, str)
    return value


def stand_folder(folder: Path, backend_url: str) -> Path:
    shutil.copytree(HARNESS, folder)
    support = support_contacts(SUPPORT_EMAIL, SUPPORT_URL, backend_url)
    archive = build_widget(folder / "widget.zip", backend_url, support=support)
    with zipfile.ZipFile(archive) as widget:
        widget.extractall(folder / "widget")
    return folder


class Page:
    """A browser tab on the stand, and what went wrong in it."""

    def __init__(self, browser: Any, folder: Path, viewport: dict[str, int]) -> None:
        self.context = browser.new_context(viewport=viewport)
        route_stand(self.context, folder)
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def open(self, *, lang: str, account: int, token: str, area: str = "settings") -> Any:
        query = f"?lang={lang}&token={token}&account={account}&area={area}"
        self.page.goto("https://acme.amocrm.ru/index.html" + query)
        self.page.wait_for_function("window.__stand && window.__stand.ready")
        return self.page

    def close(self) -> None:
        self.context.close()
        assert self.errors == [], f"the widget threw in the page: {self.errors}"


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def fits_the_width(page: Any) -> bool:
    return bool(
        page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    )
