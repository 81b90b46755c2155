"""The built widget in real headless Chromium, on a stand that plays amoCRM's part, talking to
a fake amosync service over real HTTP on loopback (another origin, so CORS is exercised)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amosync.widget.build import build_widget
from tests.widget.servers import (
    ACCOUNT_ID,
    FAILURE_STEPS,
    GOOD_KEY,
    TOKEN,
    BackendState,
    fake_backend,
    stand_server,
)

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
HARNESS = Path(__file__).parent / "harness"
SOURCE_I18N = Path(__file__).parents[2] / "src" / "amosync" / "widget" / "src" / "i18n"
ARTIFACTS = Path(__file__).parents[1] / "artifacts"


def text(lang: str, key: str) -> str:
    """A widget string from the i18n file, so the tests follow the wording."""
    value: Any = json.loads((SOURCE_I18N / f"{lang}.json").read_text(encoding="utf-8"))
    for part in key.split("."):
        value = value[part]
    assert isinstance(value, str)
    return value


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = (
            "Chromium is not installed at /usr/bin/chromium; "
            "install it with: apt-get update && apt-get install -y chromium"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def backend() -> Iterator[tuple[str, BackendState]]:
    with fake_backend() as served:
        yield served


def _stand_folder(folder: Path, backend_url: str) -> Path:
    shutil.copytree(HARNESS, folder)
    archive = build_widget(folder / "widget.zip", backend_url)
    with zipfile.ZipFile(archive) as widget:
        widget.extractall(folder / "widget")
    return folder


@pytest.fixture(scope="module")
def stand(
    tmp_path_factory: pytest.TempPathFactory, backend: tuple[str, BackendState]
) -> Iterator[str]:
    """The stand page serving the widget built for the fake backend's URL."""
    backend_url, state = backend
    folder = _stand_folder(tmp_path_factory.mktemp("stand") / "site", backend_url)
    with stand_server(folder) as url:
        state.allowed_origin = url
        yield url


@pytest.fixture
def state(backend: tuple[str, BackendState]) -> BackendState:
    backend[1].reset()
    return backend[1]


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 720, "height": 640})
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], f"the widget threw in the page: {errors}"


def open_stand(
    page: Any, url: str, *, lang: str, area: str = "settings", token: str = TOKEN
) -> None:
    query = f"?lang={lang}&token={token}&account={ACCOUNT_ID}&area={area}"
    page.goto(url + "/index.html" + query)
    page.wait_for_function("window.__stand && window.__stand.ready")


def connection(page: Any) -> Any:
    return page.locator("[data-amosync=panel] .amosync__connection")


def save_settings(page: Any, key: str, list_id: str = "") -> None:
    page.fill("input[name=unisender_key]", key)
    page.fill("input[name=list_id]", list_id)
    page.click("#save")


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_connect_key_then_sync_to_done(page: Any, stand: str, state: BackendState) -> None:
    open_stand(page, stand, lang="ru")

    page.wait_for_selector(".amosync__connection[data-state=not_connected]")
    assert connection(page).inner_text() == text("ru", "panel.not_connected")
    assert page.locator("[data-amosync=panel] button").is_disabled()
    [check] = state.calls_to("GET", "/acchasuni")
    assert check.query == {"account_id": [str(ACCOUNT_ID)]}

    # A key Unisender refuses: the service's error is shown, nothing is connected.
    save_settings(page, "not-a-real-key")
    page.wait_for_selector(".amosync__message[data-kind=error]")
    assert page.inner_text(".amosync__message") == text("ru", "errors.invalid_unisender_key")
    assert connection(page).get_attribute("data-state") == "not_connected"
    assert page.evaluate("window.__stand.statuses") == ["error"]

    # The right key, with a list: accepted, and the panel now says connected.
    save_settings(page, GOOD_KEY, list_id="42")
    page.wait_for_selector(".amosync__connection[data-state=connected]")
    assert connection(page).inner_text() == text("ru", "panel.connected")
    assert page.inner_text(".amosync__message") == text("ru", "panel.key_saved")
    sent = [call.body for call in state.calls_to("POST", "/vidget/unisender")]
    assert sent == [
        {"account_id": ACCOUNT_ID, "unisender_key": "not-a-real-key"},
        {"account_id": ACCOUNT_ID, "unisender_key": GOOD_KEY, "list_id": 42},
    ]

    # Sync now: the progress bar moves while running and reaches 100% when done.
    page.click("[data-amosync=panel] button")
    page.wait_for_selector(".amosync__progress[data-status=running]")
    running = int(page.get_attribute(".amosync__bar", "aria-valuenow"))
    assert 0 < running < 100
    assert page.locator("[data-amosync=panel] button").is_disabled()  # one run at a time
    page.wait_for_selector(".amosync__progress[data-status=done]")
    assert page.get_attribute(".amosync__bar", "aria-valuenow") == "100"
    assert page.inner_text(".amosync__run-status") == text("ru", "panel.sync_done")
    counts = {
        name: page.inner_text(f"[data-count={name}]")
        for name in ("fetched", "synced", "unsynced", "failed")
    }
    assert counts == {"fetched": "500", "synced": "440", "unsynced": "60", "failed": "0"}
    page.wait_for_selector("[data-amosync=panel] button:not([disabled])")
    assert [call.body for call in state.calls_to("POST", "/sync")] == [{"account_id": ACCOUNT_ID}]
    assert len(state.calls_to("GET", "/sync/run-1")) == 3
    screenshot(page, "widget_settings_ru.png")

    # Every call carried amoCRM's token, crossed origins from the stand, and sent JSON.
    assert state.calls
    assert all(call.token == TOKEN for call in state.calls)
    assert {call.origin for call in state.calls} == {stand}
    assert state.preflights > 0
    posts = [call for call in state.calls if call.method == "POST"]
    assert all(call.content_type == "application/json" for call in posts)


def test_failed_sync_on_the_advanced_settings_page(
    page: Any, stand: str, state: BackendState
) -> None:
    state.connected = True
    state.steps = list(FAILURE_STEPS)
    open_stand(page, stand, lang="en", area="advanced_settings")

    panel = page.locator("#work-area-amosync_test [data-amosync=panel]")
    panel.locator(".amosync__connection[data-state=connected]").wait_for()
    assert connection(page).inner_text() == text("en", "panel.connected")

    page.click("[data-amosync=panel] button")
    page.wait_for_selector(".amosync__progress[data-status=failed]")
    status = page.inner_text(".amosync__run-status")
    assert status == text("en", "panel.sync_failed") + ": " + str(FAILURE_STEPS[-1]["error"])
    assert page.get_attribute(".amosync__bar", "aria-valuenow") != "100"
    assert page.inner_text("[data-count=failed]") == "250"
    page.wait_for_selector("[data-amosync=panel] button:not([disabled])")
    screenshot(page, "widget_advanced_failed_en.png")


def test_token_refused_by_the_service_is_explained(
    page: Any, stand: str, state: BackendState
) -> None:
    open_stand(page, stand, lang="en", token="expired-token")

    page.wait_for_selector(".amosync__connection[data-state=error]")
    assert page.inner_text(".amosync__message") == text("en", "errors.unauthorized")
    assert page.locator("[data-amosync=panel] button").is_disabled()
    assert [call.token for call in state.calls] == ["expired-token"]


def test_unreachable_service_is_explained(page: Any, tmp_path: Path, state: BackendState) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    folder = _stand_folder(tmp_path / "site", closed)
    with stand_server(folder) as url:
        open_stand(page, url, lang="ru")
        page.wait_for_selector(".amosync__connection[data-state=error]")
        assert page.inner_text(".amosync__message") == text("ru", "errors.network")
    assert state.calls == []
