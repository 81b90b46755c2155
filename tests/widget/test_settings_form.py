"""The widget's settings form (advanced settings page) in real headless Chromium, against the
real service and sandbox (tests/widget/servers.py): lists, tags, stages and fields picked by
name from `GET /accounts/{id}/settings/choices`, saved with `PUT /accounts/{id}/settings`,
the sync it starts followed in the panel, and the service's refusals shown in the user's
language. Screenshots at a desktop's and a phone's width (390 px), in Russian and English,
go to tests/artifacts/.
"""

# The browser, the running service and the stand are test_browser's fixtures, imported so that
# this module gets its own (module-scoped) service: pytest's way, which ruff reads as unused
# imports redefined by the tests' parameters.
# ruff: noqa: F401, F811

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.widget.servers import Service
from tests.widget.stand import CONTACTS, DESKTOP, accounts, fits_the_width, screenshot, text

PHONE_390 = {"width": 390, "height": 844}
FORM = "[data-amosync=settings]"


def connected_account(service: Service, *, tagged: bool = False) -> tuple[int, str]:
    """An installed account whose key is connected and whose first sync is done."""
    account = next(accounts)
    key = f"widget-form-key-{account}"
    service.add_account(account, CONTACTS)
    if tagged:
        with_tags(service, account)
    service.add_key(key)
    service.install(account)
    service.wait_installed(account)
    assert service.wait_run(service.connect(account, key))["status"] == "done"
    return account, key


def create_list(service: Service, key: str, title: str) -> int:
    """A list made through Unisender's own API (createList), as its owner would."""
    response = httpx.post(
        f"{service.sandbox_url}/ru/api/createList",
        data={"format": "json", "api_key": key, "title": title},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return int(response.json()["result"]["id"])


def with_tags(service: Service, account: int) -> None:
    """Generated contacts: they carry the account's tags (vip, опт, ...), so amoCRM lists
    those tags for the account."""
    service.sandbox("POST", f"/amocrm/accounts/{account}/generate", json={"n": 20, "seed": 3})


def open_form(tab: Any, service: Service, account: int, lang: str, viewport: Any) -> Any:
    page = tab(viewport).open(
        lang=lang, account=account, token=service.token(account), area="advanced_settings"
    )
    page.wait_for_selector(f"{FORM} [data-action=save-settings]")
    return page


def form_message(page: Any) -> str:
    return str(page.inner_text(f"{FORM} .amosync__message"))


def stored(service: Service, account: int) -> dict[str, Any]:
    response = service.http.get(f"/accounts/{account}/settings")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_choose_a_list_and_a_tag_rule_save_and_see_the_sync(
    tab: Any,
    service: Service,
) -> None:
    account, key = connected_account(service, tagged=True)
    vip = create_list(service, key, "VIP newsletter")
    page = open_form(tab, service, account, "ru", DESKTOP)
    last_run = page.locator(".amosync__progress[data-status=done]")
    last_run.wait_for()
    assert page.locator(f"{FORM} [data-rule]").count() == 0
    assert page.inner_text(f"{FORM} .amosync-form__empty") == text("ru", "form.no_rules")

    page.click(f"{FORM} [data-action=add-rule]")
    rule = page.locator(f"{FORM} [data-rule]").first
    # By title and by name, as a person picks them; the ids travel underneath.
    rule.locator("select[name=list_id]").select_option(label="VIP newsletter")
    rule.locator("select[name=tags_any]").select_option(label="vip")
    page.click(f"{FORM} [data-action=save-settings]")

    page.wait_for_selector(f"{FORM} .amosync__message[data-kind=success]", timeout=20_000)
    assert form_message(page) == text("ru", "form.saved_sync")
    # The sync the save started, followed in the panel until it is done.
    page.wait_for_selector(".amosync__progress[data-status=done]", timeout=30_000)
    assert page.inner_text(".amosync__run-status") == text("ru", "panel.sync_done")
    saved = stored(service, account)
    assert saved["lists"] == [{"list_id": vip, "tags_any": ["vip"], "lead_statuses": []}]
    # The form shows what the service stored, by name.
    shown = page.locator(f"{FORM} [data-rule]").first
    assert shown.locator("select[name=list_id] option:checked").inner_text() == "VIP newsletter"
    assert shown.locator("select[name=tags_any] option:checked").all_inner_texts() == ["vip"]
    assert fits_the_width(page)
    screenshot(page, "widget_form_saved_ru_desktop.png")


def test_consent_toggles_are_saved_without_a_sync(
    tab: Any,
    service: Service,
) -> None:
    account, _ = connected_account(service)
    page = open_form(tab, service, account, "en", PHONE_390)
    assert page.is_checked(f"{FORM} [name=consent_enabled]")
    assert page.is_checked(f"{FORM} [name=consent_note]")
    assert page.input_value(f"{FORM} [name=consent_tag]") == "unsubscribed"

    page.uncheck(f"{FORM} [name=consent_note]")
    page.fill(f"{FORM} [name=consent_tag]", "opted-out")
    page.click(f"{FORM} [data-action=save-settings]")
    page.wait_for_selector(f"{FORM} .amosync__message[data-kind=success]", timeout=20_000)
    # Consent decides nothing of what goes to Unisender: no sync.
    assert form_message(page) == text("en", "form.saved")
    assert stored(service, account)["consent"] == {
        "enabled": True,
        "tag": "opted-out",
        "note": False,
    }

    page.uncheck(f"{FORM} [name=consent_enabled]")
    page.click(f"{FORM} [data-action=save-settings]")
    page.wait_for_function(
        "() => !document.querySelector('[data-amosync=settings] [name=consent_enabled]').checked"
        " && document.querySelector('[data-amosync=settings] .amosync__message')"
        ".getAttribute('data-kind') === 'success'"
    )
    assert stored(service, account)["consent"]["enabled"] is False
    # A reload shows what is stored.
    page.reload()
    page.wait_for_selector(f"{FORM} [data-action=save-settings]")
    assert not page.is_checked(f"{FORM} [name=consent_enabled]")
    assert page.input_value(f"{FORM} [name=consent_tag]") == "opted-out"
    assert fits_the_width(page)
    screenshot(page, "widget_form_consent_en_390px.png")


@pytest.mark.parametrize(("lang", "viewport"), [("ru", PHONE_390), ("en", DESKTOP)])
def test_a_refused_setting_is_explained_in_the_users_language(
    tab: Any,
    service: Service,
    lang: str,
    viewport: dict[str, int],
) -> None:
    account, key = connected_account(service)
    create_list(service, key, "Partners")
    page = open_form(tab, service, account, lang, viewport)
    before = stored(service, account)

    # A Unisender field name the service refuses (400 invalid_field_name).
    page.click(f"{FORM} [data-action=add-field]")
    pair = page.locator(f"{FORM} [data-pair]").first
    pair.locator("select[name=amocrm_field_id]").select_option(index=1)
    pair.locator("[name=unisender_field]").fill("1 city")
    page.click(f"{FORM} [data-action=save-settings]")
    page.wait_for_selector(f"{FORM} .amosync__message[data-kind=error]", timeout=20_000)
    assert form_message(page) == text(lang, "form.errors.invalid_field_name")
    assert stored(service, account) == before

    # A rule left without a condition: said before anything is sent.
    page.click(f"{FORM} [data-action=add-rule]")
    # The main list is not offered: every contact is in it already.
    rule = page.locator(f"{FORM} [data-rule] select[name=list_id]").first
    assert rule.locator("option").all_inner_texts()[1:] == ["Partners"]
    rule.select_option(label="Partners")
    page.click(f"{FORM} [data-action=save-settings]")
    page.wait_for_function(
        "(t) => document.querySelector('[data-amosync=settings] .amosync__message')"
        ".textContent === t",
        arg=text(lang, "form.rule_needs_condition"),
    )
    # This account has no tags in amoCRM yet: their names are typed, not picked.
    tags = page.locator(f"{FORM} [data-rule] input[name=tags_any]")
    assert tags.get_attribute("placeholder") == text(lang, "form.tags_placeholder")
    assert fits_the_width(page)
    screenshot(page, f"widget_form_error_{lang}_{viewport['width']}px.png")
