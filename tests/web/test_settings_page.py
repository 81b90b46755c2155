"""The dashboard's settings form (SPEC §6, §8, §9) against the real stack: the sandbox's
amoCRM and Unisender and the service over HTTP, on SQLite and PostgreSQL.

A plain form post, as a browser without scripts sends it: lists, tags, stages and fields
offered by name, a save that stores the settings and starts a full sync, a refusal said in
the page's language. Then the same in headless Chromium, with screenshots at a desktop's
and a phone's width (390 px), in Russian and English, in tests/artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.datastructures import FormData

from amosync.segments import members
from amosync.web.settings_form import Incomplete, parse
from tests.conftest import ADMIN_TOKEN
from tests.stack import ACCOUNT_ID, UNISENDER_KEY, Stack, stack
from tests.web.browser import dashboard_tab, visible_english
from tests.web.conftest import csrf_of

SETTINGS = f"/ui/accounts/{ACCOUNT_ID}/settings"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


# -- what the form posts ------------------------------------------------------------------


def form(*pairs: tuple[str, str]) -> FormData:
    return FormData(list(pairs))


def test_a_post_reads_as_the_settings_object() -> None:
    posted = form(
        ("rule-0-list", "321"),
        ("rule-0-tags", "vip"),
        ("rule-0-tags", "partner"),
        ("rule-1-list", "654"),
        ("rule-1-statuses", "7:142"),
        ("rule-1-statuses", "7:143"),
        ("rule-2-list", ""),  # the empty row for a new rule
        ("rule-3-list", "999"),
        ("rule-3-tags", "gone"),
        ("rule-3-remove", "1"),
        ("phone", "1"),
        ("phone_region", "kz"),
        ("custom-0-field", "55123"),
        ("custom-0-name", "city"),
        ("custom-1-field", ""),
        ("custom-1-name", ""),
        ("consent_tag", "opted-out"),
        ("consent_note", "1"),
    )
    assert parse(posted) == {
        "fields": {
            "phone": True,
            "phone_region": "KZ",
            "tags": False,
            "custom": [{"amocrm_field_id": 55123, "unisender_field": "city"}],
        },
        "lists": [
            {"list_id": 321, "tags_any": ["vip", "partner"]},
            {
                "list_id": 654,
                "lead_statuses": [
                    {"pipeline_id": 7, "status_id": 142},
                    {"pipeline_id": 7, "status_id": 143},
                ],
            },
        ],
        # An unchecked box is not posted at all: off.
        "consent": {"enabled": False, "tag": "opted-out", "note": True},
    }


def test_typed_tags_are_split_on_commas() -> None:
    # Without amoCRM's tag list the form has a text box instead of a picker.
    posted = form(("rule-0-list", "5"), ("rule-0-tags", " vip, опт ,,vip "))
    assert parse(posted)["lists"] == [{"list_id": 5, "tags_any": ["vip", "опт"]}]


@pytest.mark.parametrize(
    ("pairs", "problem"),
    [
        ((("rule-0-tags", "vip"),), "rule_needs_list"),
        ((("rule-0-list", "first"), ("rule-0-tags", "vip")), "rule_needs_list"),
        ((("rule-0-list", "5"),), "rule_needs_condition"),
        ((("custom-0-field", "55123"),), "pair_incomplete"),
        ((("custom-0-name", "city"),), "pair_incomplete"),
        ((("consent_enabled", "1"), ("consent_tag", " ")), "consent_tag_missing"),
    ],
)
def test_a_row_left_half_done_is_named(pairs: tuple[tuple[str, str], ...], problem: str) -> None:
    with pytest.raises(Incomplete) as caught:
        parse(form(*pairs))
    assert caught.value.problem == problem


# -- over HTTP ------------------------------------------------------------------------------


@asynccontextmanager
async def ready(database_url: str) -> AsyncIterator[Stack]:
    """An installed account with a connected key, its first sync done, a second Unisender
    list and amoCRM tags (generated contacts carry them)."""
    async with stack(database_url) as s:
        await s.install()
        s.sandbox.amocrm.generate_contacts(ACCOUNT_ID, 30, seed=5)
        await s.connect_unisender()
        await s.settle()
        s.sandbox.unisender.create_list(UNISENDER_KEY, "VIP newsletter")
        yield s


@asynccontextmanager
async def operator(s: Stack, lang: str = "en") -> AsyncIterator[httpx.AsyncClient]:
    """A browser without scripts, logged in, asking for `lang`."""
    headers = {"Accept-Language": lang}
    async with httpx.AsyncClient(base_url=s.url, headers=headers, timeout=30) as client:
        response = await client.post("/login", data={"token": ADMIN_TOKEN})
        assert response.status_code == 303
        yield client


def options(html: str, name: str) -> dict[str, str]:
    """label → value of the options of the select named `name`."""
    found = re.search(rf'<select[^>]*name="{re.escape(name)}"[^>]*>(.*?)</select>', html, re.S)
    assert found, f"no select named {name}"
    return {
        unescape(label): unescape(value)
        for value, label in re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', found[1])
    }


def list_id(s: Stack, title: str) -> int:
    [found] = [item for item in s.sandbox.unisender.lists(UNISENDER_KEY) if item["title"] == title]
    return int(found["id"])


async def test_save_a_list_and_a_tag_rule_without_a_script(database_url: str) -> None:
    async with ready(database_url) as s, operator(s) as web:
        page = await web.get(SETTINGS)
        assert page.status_code == 200
        html = page.text
        # Picked by name: the key's lists by title, the account's tags and stages by name.
        assert options(html, "rule-0-list")["VIP newsletter"] == str(list_id(s, "VIP newsletter"))
        assert "vip" in options(html, "rule-0-tags")
        assert "Успешно реализовано" in html or "Won" in html  # status 142 in a pipeline
        assert "data-choices-error" not in html

        answer = await web.post(
            SETTINGS,
            data={
                "csrf": csrf_of(html),
                "rule-0-list": str(list_id(s, "VIP newsletter")),
                "rule-0-tags": "vip",
                "consent_enabled": "1",
                "consent_tag": "unsubscribed",
                "consent_note": "1",
            },
        )
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == f"/ui/accounts/{ACCOUNT_ID}?notice=settings_saved_sync"
        stored = (await s.http.get(f"/accounts/{ACCOUNT_ID}/settings")).json()
        assert stored["lists"] == [
            {"list_id": list_id(s, "VIP newsletter"), "tags_any": ["vip"], "lead_statuses": []}
        ]
        run = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()["last_sync"]
        assert run["status"] in ("queued", "running")

        account = await web.get(answer.headers["location"])
        assert "a full sync has been queued to apply them" in account.text
        assert f'data-rule-list="{list_id(s, "VIP newsletter")}"' in account.text
        assert "tags include one of: <span data-raw>vip</span>" in account.text
        assert re.search(r'data-role="rule-count">0<', account.text)  # not filled yet

        # Once the sync is done, the rule says how many contacts its list holds.
        await s.settle()
        vip = list_id(s, "VIP newsletter")
        async with s.services.sessions() as session:
            counted = (await members.rule_counts(session, ACCOUNT_ID))[vip]
        assert counted > 0
        assert s.sandbox.unisender.list_members(UNISENDER_KEY, vip)
        account = await web.get(f"/ui/accounts/{ACCOUNT_ID}")
        assert re.search(rf'data-role="rule-count">{counted}<', account.text)
        form_page = await web.get(SETTINGS)
        assert re.search(rf'data-role="rule-count">{counted} contacts<', form_page.text)

        # Saving what is stored again changes nothing that goes to Unisender: no new sync.
        again = await web.get(SETTINGS)
        assert 'name="rule-0-remove"' in again.text
        assert options(again.text, "rule-0-tags")  # the stored rule, shown
        repeat = await web.post(
            SETTINGS,
            data={
                "csrf": csrf_of(again.text),
                "rule-0-list": str(list_id(s, "VIP newsletter")),
                "rule-0-tags": "vip",
                "consent_enabled": "1",
                "consent_tag": "unsubscribed",
                "consent_note": "1",
            },
        )
        assert repeat.headers["location"].endswith("notice=settings_saved")


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("en", "A Unisender field name must start with a Latin letter"),
        ("ru", "Имя поля Unisender должно начинаться с латинской буквы"),
    ],
)
async def test_a_refusal_is_said_in_the_pages_language(
    database_url: str, lang: str, expected: str
) -> None:
    async with ready(database_url) as s, operator(s, lang) as web:
        page = await web.get(SETTINGS)
        field = next(iter(v for k, v in options(page.text, "custom-0-field").items() if v))
        answer = await web.post(
            SETTINGS,
            data={"csrf": csrf_of(page.text), "custom-0-field": field, "custom-0-name": "1 city"},
        )
        assert answer.status_code == 400
        assert 'data-code="invalid_field_name"' in answer.text
        assert expected in unescape(answer.text)
        # What was typed is still there, to be corrected.
        assert 'value="1 city"' in answer.text
        stored = (await s.http.get(f"/accounts/{ACCOUNT_ID}/settings")).json()
        assert stored["fields"]["custom"] == []


async def test_a_status_rule_is_picked_by_the_stages_name(database_url: str) -> None:
    async with ready(database_url) as s, operator(s) as web:
        customers = s.sandbox.unisender.create_list(UNISENDER_KEY, "Customers")
        page = await web.get(SETTINGS)
        select = re.search(r'name="rule-0-statuses".*?</select>', page.text, re.S)
        assert select
        # amoCRM's won status (142) of the account's first pipeline, by its name.
        won = re.search(r'<option value="(\d+):142">Успешно реализовано</option>', select[0])
        assert won, select[0][:500]
        answer = await web.post(
            SETTINGS,
            data={
                "csrf": csrf_of(page.text),
                "rule-0-list": str(customers),
                "rule-0-statuses": f"{won[1]}:142",
                "consent_enabled": "1",
                "consent_tag": "unsubscribed",
            },
        )
        assert answer.headers["location"].endswith("notice=settings_saved_sync")
        stored = (await s.http.get(f"/accounts/{ACCOUNT_ID}/settings")).json()
        assert stored["lists"] == [
            {
                "list_id": customers,
                "tags_any": [],
                "lead_statuses": [{"pipeline_id": int(won[1]), "status_id": 142}],
            }
        ]
        # The form shows the stage chosen, in its pipeline.
        again = await web.get(SETTINGS)
        assert f'<option value="{won[1]}:142" selected>Успешно реализовано</option>' in again.text


async def test_consent_toggles_are_saved_without_a_sync(database_url: str) -> None:
    async with ready(database_url) as s, operator(s, "ru") as web:
        page = await web.get(SETTINGS)
        assert 'name="consent_enabled" value="1" checked' in page.text
        runs = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()["last_sync"]
        # Boxes left unticked are not posted: write-back off, no note, another tag.
        answer = await web.post(
            SETTINGS, data={"csrf": csrf_of(page.text), "consent_tag": "не звонить"}
        )
        assert answer.headers["location"].endswith("notice=settings_saved")
        stored = (await s.http.get(f"/accounts/{ACCOUNT_ID}/settings")).json()
        assert stored["consent"] == {"enabled": False, "tag": "не звонить", "note": False}
        # Consent decides nothing of what goes to Unisender: no new run.
        assert (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()["last_sync"] == runs
        account = await web.get(answer.headers["location"])
        assert "Настройки сохранены." in account.text
        assert "Отписки в amoCRM не записываются." in account.text
        again = await web.get(SETTINGS)
        assert 'name="consent_enabled" value="1">' in again.text  # unticked now
        assert 'value="не звонить"' in again.text


async def test_a_form_from_elsewhere_is_refused(database_url: str) -> None:
    async with ready(database_url) as s, operator(s) as web:
        answer = await web.post(SETTINGS, data={"csrf": "0" * 64, "consent_tag": "x"})
        assert answer.status_code == 403
        stored = (await s.http.get(f"/accounts/{ACCOUNT_ID}/settings")).json()
        assert stored["consent"]["tag"] == "unsubscribed"


# -- in the browser -------------------------------------------------------------------------


async def test_the_form_in_the_browser_in_both_languages_and_widths(
    database_url: str,
    browser: Any,
    artifacts: Path,
) -> None:
    from playwright.async_api import expect

    async with ready(database_url) as s:
        vip = list_id(s, "VIP newsletter")
        for lang, viewport in (("en", DESKTOP), ("ru", PHONE)):
            async with dashboard_tab(browser, s.url, artifacts) as dashboard:
                page = dashboard.page
                await page.set_viewport_size(viewport)
                await page.context.add_cookies(
                    [{"name": "amosync_lang", "value": lang, "url": s.url}]
                )
                await dashboard.open()
                await dashboard.login()
                await dashboard.open(f"/ui/accounts/{ACCOUNT_ID}")
                await page.click("[data-action=edit-settings]")
                await expect(page.locator("form[data-form=settings]")).to_be_visible()
                await dashboard.screenshot(f"dashboard_settings_{lang}_{viewport['width']}px.png")
                assert await fits(page)
                if lang == "ru":
                    assert await visible_english(page) == []

                # A refusal first: a field name Unisender would not take.
                await page.select_option("[name=custom-0-field]", index=1)
                await page.fill("[name=custom-0-name]", "город")
                await page.click("[data-action=save-settings]")
                error = page.locator("[data-role=settings-error]")
                await expect(error).to_have_attribute("data-code", "invalid_field_name")
                texts = {"en": "Latin letter", "ru": "латинской буквы"}
                await expect(error).to_contain_text(texts[lang])
                # The page came back as a 400 (what Chromium logs for it): expected here.
                refused = "the server responded with a status of 400"
                dashboard.problems[:] = [p for p in dashboard.problems if refused not in p]
                assert await fits(page)
                await dashboard.screenshot(
                    f"dashboard_settings_error_{lang}_{viewport['width']}px.png"
                )

                # Then a list and a tag rule, with the field name put right.
                await page.fill("[name=custom-0-name]", "city")
                await page.select_option("[name=rule-0-list]", str(vip))
                await page.select_option("[name=rule-0-tags]", "vip")
                await page.click("[data-action=save-settings]")
                await expect(page.locator("[data-notice]")).to_be_visible()
                await expect(page.locator(f"[data-rule-list='{vip}']")).to_be_visible()
                # The sync the change started, on the account page's progress block.
                status = page.locator(".progress-block--detailed [data-field=status]")
                await expect(status).to_have_attribute(
                    "class", re.compile("badge--(queued|running|done)")
                )
                await s.settle()
                await expect(status).to_have_attribute(
                    "class", re.compile("badge--done"), timeout=15_000
                )
                assert await fits(page)
                if lang == "ru":
                    assert await visible_english(page) == []
                # The rules on the account page (the whole page is long on a phone).
                await page.locator("#settings").screenshot(
                    path=str(
                        artifacts / f"dashboard_settings_saved_{lang}_{viewport['width']}px.png"
                    )
                )
            # The next language starts from no rule.
            await s.http.put(f"/accounts/{ACCOUNT_ID}/settings", json={"lists": [], "fields": {}})


async def fits(page: Any) -> bool:
    return bool(
        await page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    )
