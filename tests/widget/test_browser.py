"""The built widget in real headless Chromium against the real service.

`amosync serve` runs against `amosync sandbox` (tests/widget/servers.py); the stand page
(harness/: amoCRM's part — its AMD loader, globals, settings modal and save button) is served
at an amoCRM account's origin, https://acme.amocrm.ru, so the widget's calls cross origins
to the service and pass its CORS as they do in amoCRM. Russian and English, a desktop modal
and a phone's width; screenshots go to tests/artifacts/.

Only `test_every_code_is_shown_in_both_languages` answers the widget's calls in the browser
(Playwright routing): most of the service's error codes (an internal error, a database that
is down, a misconfigured install) cannot be produced on demand from the outside.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port
from tests.widget.codes import problem_codes, service_codes
from tests.widget.servers import Service
from tests.widget.stand import (
    CONTACTS,
    DESKTOP,
    GOOD_KEY,
    PHONE,
    SUPPORT_EMAIL,
    SUPPORT_URL,
    Page,
    accounts,
    fits_the_width,
    screenshot,
    stand_folder,
    text,
)


def connection(page: Any) -> Any:
    return page.locator("[data-amosync=panel] .amosync__connection")


def message(page: Any) -> str:
    return str(page.inner_text(".amosync__message"))


def save_settings(page: Any, key: str, list_id: str = "") -> None:
    page.fill("input[name=unisender_key]", key)
    page.fill("input[name=list_id]", list_id)
    page.click("#save")


def test_install_under_way_then_a_refused_key_then_a_good_one_then_sync(
    tab: Any, service: Service
) -> None:
    account = next(accounts)
    service.add_account(account, CONTACTS)
    page = tab().open(lang="ru", account=account, token=service.token(account))

    # amoCRM opens the settings while its install call's code exchange is still to come:
    # the account does not exist on the service yet. No error: "being connected".
    page.wait_for_selector(".amosync__connection[data-state=connecting]")
    assert connection(page).inner_text() == text("ru", "panel.connecting")
    assert page.inner_text(".amosync__hint") == text("ru", "panel.connecting_hint")
    assert page.locator(".amosync__message[data-kind=error]").count() == 0
    screenshot(page, "widget_connecting_ru.png")

    service.install(account)
    page.wait_for_selector(".amosync__connection[data-state=not_connected]", timeout=20_000)
    assert connection(page).inner_text() == text("ru", "panel.not_connected")
    assert page.inner_text(".amosync__hint") == text("ru", "panel.connect_hint")
    assert page.locator("[data-amosync=panel] button").is_disabled()

    # A key Unisender refuses: said at once, in Russian, and amoCRM does not store it.
    save_settings(page, "not-a-real-key")
    page.wait_for_selector(".amosync__message[data-kind=error]")
    assert message(page) == text("ru", "errors.invalid_unisender_key")
    assert connection(page).get_attribute("data-state") == "not_connected"
    assert page.evaluate("window.__stand.onSave") == [False]
    assert page.evaluate("window.__stand.saves") == []
    assert page.evaluate("window.__stand.statuses") == ["error"]
    screenshot(page, "widget_refused_key_ru.png")

    # The right key: accepted by the service, then saved by amoCRM (the widget presses
    # amoCRM's save button again and lets the checked key through), then the first sync.
    save_settings(page, GOOD_KEY)
    page.wait_for_function("window.__stand.saves.length === 1")
    assert page.evaluate("window.__stand.onSave") == [False, False, True]
    assert page.evaluate("window.__stand.saves") == [{"unisender_key": GOOD_KEY, "list_id": ""}]
    page.wait_for_selector(".amosync__connection[data-state=connected]")
    assert message(page) == text("ru", "panel.key_saved")
    page.wait_for_selector(".amosync__progress[data-status=done]", timeout=30_000)
    assert page.get_attribute(".amosync__bar", "aria-valuenow") == "100"
    assert page.inner_text(".amosync__run-status") == text("ru", "panel.sync_done")
    counts = {
        name: page.inner_text(f"[data-count={name}]")
        for name in ("fetched", "synced", "unsynced", "failed")
    }
    assert counts == {"fetched": "3", "synced": "2", "unsynced": "1", "failed": "0"}
    page.wait_for_selector("[data-amosync=panel] button:not([disabled])")

    # Saving again with nothing changed needs no new check.
    page.click("#save")
    assert page.evaluate("window.__stand.onSave")[-1] is True

    # The operator's support contacts, never the service's admin login.
    support = page.locator("[data-amosync=support]")
    assert support.locator("a").nth(0).get_attribute("href") == SUPPORT_URL
    assert support.locator("a").nth(1).get_attribute("href") == f"mailto:{SUPPORT_EMAIL}"
    assert text("ru", "panel.support") in support.inner_text()
    screenshot(page, "widget_settings_ru.png")


def test_a_failed_sync_on_a_phone_in_english(tab: Any, service: Service) -> None:
    account = next(accounts)
    key = f"widget-test-key-{account}"
    service.add_account(account, CONTACTS)
    service.add_key(key)
    service.install(account)
    service.wait_installed(account)
    assert service.wait_run(service.connect(account, key))["status"] == "done"
    service.remove_key(key)  # Unisender now answers invalid_api_key for it

    page = tab(PHONE).open(
        lang="en", account=account, token=service.token(account), area="advanced_settings"
    )
    panel = page.locator("#work-area-amosync_test [data-amosync=panel]")
    panel.locator(".amosync__connection[data-state=connected]").wait_for()
    assert connection(page).inner_text() == text("en", "panel.connected")
    page.wait_for_selector(".amosync__progress[data-status=done]")  # the last run, shown

    page.click("[data-amosync=panel] button")
    page.wait_for_selector(".amosync__progress[data-status=failed]", timeout=30_000)
    assert page.inner_text(".amosync__run-status") == text("en", "panel.sync_failed")
    # Why, in the user's language, not in the service's words: the key is no longer valid.
    problem = page.locator("[data-problem=unisender_key_invalid]")
    problem.wait_for()
    assert problem.inner_text() == text("en", "problems.unisender_key_invalid")
    page.wait_for_selector(".amosync__connection[data-state=not_connected]")
    # No key field on this page: the hint says where it is.
    assert page.inner_text(".amosync__hint") == text("en", "panel.connect_hint_settings")
    assert page.inner_text(".amosync__progress .amosync__hint") == text(
        "en", "panel.sync_failed_hint"
    )
    assert "Unisender refused" not in page.inner_text("[data-amosync=panel]")
    assert fits_the_width(page)
    screenshot(page, "widget_failed_phone_en.png")


@pytest.mark.parametrize(("lang", "viewport"), [("ru", PHONE), ("en", DESKTOP)])
def test_the_services_errors_are_shown_in_the_users_language(
    tab: Any, service: Service, lang: str, viewport: dict[str, int]
) -> None:
    account = next(accounts)
    service.add_account(account, CONTACTS)
    service.install(account)
    service.wait_installed(account)
    shown: dict[str, str] = {}

    # A token amoCRM did not sign.
    page = tab(viewport).open(lang=lang, account=account, token="not-a-token")
    page.wait_for_selector(".amosync__connection[data-state=error]")
    shown["invalid_widget_token"] = message(page)

    # A token of another account than the page's.
    page = tab(viewport).open(lang=lang, account=account, token=service.token(account + 1))
    page.wait_for_selector(".amosync__connection[data-state=error]")
    shown["forbidden_account"] = message(page)

    # A list the key cannot see, then a list id that is not a number.
    page = tab(viewport).open(lang=lang, account=account, token=service.token(account))
    page.wait_for_selector(".amosync__connection[data-state=not_connected]")
    save_settings(page, GOOD_KEY, list_id="987654321")
    page.wait_for_selector(".amosync__message[data-kind=error]")
    shown["unknown_list"] = message(page)
    save_settings(page, GOOD_KEY, list_id="first list")
    page.wait_for_function(
        "(t) => document.querySelector('.amosync__message').textContent === t",
        arg=text(lang, "errors.invalid_request"),
    )
    shown["invalid_request"] = message(page)
    assert fits_the_width(page)
    screenshot(page, f"widget_invalid_list_{lang}_{viewport['width']}px.png")
    assert page.evaluate("window.__stand.saves") == []

    # An account disconnected from the service.
    response = service.http.post(
        "/rpc",
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "account.disconnect",
            "params": {"account_id": account},
        },
    )
    assert response.json()["result"]["disconnected"] is True, response.text
    page = tab(viewport).open(lang=lang, account=account, token=service.token(account))
    page.wait_for_selector(".amosync__connection[data-state=error]")
    shown["account_disconnected"] = message(page)

    assert shown == {code: text(lang, f"errors.{code}") for code in shown}
    assert fits_the_width(page)
    screenshot(page, f"widget_disconnected_{lang}_{viewport['width']}px.png")


@pytest.mark.parametrize("lang", ["ru", "en"])
def test_unreachable_service_is_explained(browser: Any, tmp_path: Path, lang: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # a loopback port nobody listens on
    folder = stand_folder(tmp_path / "site", closed)
    page = Page(browser, folder, DESKTOP)
    try:
        shown = page.open(lang=lang, account=41999999, token="any")
        shown.wait_for_selector(".amosync__connection[data-state=error]")
        assert message(shown) == text(lang, "errors.network")
    finally:
        page.close()


@pytest.mark.parametrize("lang", ["ru", "en"])
def test_every_code_is_shown_in_both_languages(tab: Any, service: Service, lang: str) -> None:
    """Each code the service can answer (read from its source) and each account problem,
    shown in the widget as this language's text, never as the service's English detail."""
    account = next(accounts)
    codes = sorted(service_codes())
    answer: dict[str, Any] = {"code": None}
    view = {
        "id": account,
        "status": "active",
        "unisender_connected": True,
        "problems": [
            {"code": code, "detail": f"English detail of {code}", "since": "2026-12-01T10:00:00Z"}
            for code in sorted(problem_codes())
        ],
        "last_sync": None,
    }

    def backend(route: Any) -> None:
        request = route.request
        headers = {"Access-Control-Allow-Origin": "https://acme.amocrm.ru", "Vary": "Origin"}
        if request.method == "OPTIONS":
            headers["Access-Control-Allow-Headers"] = "X-Auth-Token, Content-Type"
            headers["Access-Control-Allow-Methods"] = "GET, POST"
            route.fulfill(status=204, headers=headers)
        elif request.method == "GET" and f"/accounts/{account}" in request.url:
            route.fulfill(status=200, json=view, headers=headers)
        else:
            code = answer["code"]
            body = {"error": code, "detail": f"English detail of {code}"}
            route.fulfill(status=400, json=body, headers=headers)

    opened = tab()
    opened.context.route(f"{service.url}/**", backend)
    page = opened.open(lang=lang, account=account, token=service.token(account))
    page.wait_for_selector(".amosync__connection[data-state=connected]")

    problems = {
        item.get_attribute("data-problem"): item.inner_text()
        for item in page.locator(".amosync__problems li").all()
    }
    expected = {code: text(lang, f"problems.{code}") for code in problem_codes()}
    del expected["unisender_key_missing"]  # said by the hint under the connection instead
    assert problems == expected

    shown = {}
    for code in codes:
        answer["code"] = code
        page.evaluate("document.querySelector('.amosync__message').textContent = ''")
        page.click("[data-amosync=panel] button")
        page.wait_for_selector(".amosync__message[data-kind=error]:not(:empty)")
        shown[code] = message(page)
    assert shown == {code: text(lang, f"errors.{code}") for code in codes}
    assert not any("English detail" in value for value in shown.values())

    # A code of a newer service: the general text, with the code for support.
    answer["code"] = "some_future_code"
    page.click("[data-amosync=panel] button")
    page.wait_for_function(
        "(t) => document.querySelector('.amosync__message').textContent === t",
        arg=text(lang, "errors.unknown") + " (some_future_code)",
    )
    screenshot(page, f"widget_problems_{lang}.png")
