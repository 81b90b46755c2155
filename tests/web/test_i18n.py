"""The dashboard's languages: every message has its Russian translation, the language
follows the browser unless the operator switched it, and the switch stays on this site."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from amosync.web import i18n
from tests.web.conftest import ACCOUNT_ID, account, add, log_in

ROOT = Path(__file__).resolve().parents[2]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "pgettext": ((1, "c"), 2), "N_": None}


def extracted() -> set[tuple[str | None, str]]:
    """(context, message) of every marked message in the dashboard's code and templates."""
    found = set()
    method_map = [
        ("src/amosync/web/**.py", "python"),
        ("src/amosync/web/templates/**.html", "jinja2"),
    ]
    options = {"src/amosync/web/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    for _file, _line, message, _comments, context in extract_from_dir(
        str(ROOT), method_map, options, keywords=KEYWORDS
    ):
        text = message[0] if isinstance(message, tuple) else message
        found.add((context, text))
    return found


def catalogue() -> object:
    path = i18n.CATALOGUES / "ru" / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as source:
        return read_po(source, locale="ru")


def test_every_message_has_a_russian_translation() -> None:
    ru = catalogue()
    messages = extracted()
    assert len(messages) > 100  # the extraction really read the templates
    missing = []
    for context, text in sorted(messages, key=lambda m: (m[0] or "", m[1])):
        entry = ru.get(text, context=context)  # type: ignore[attr-defined]
        strings = entry.string if entry is not None else None
        if not strings or (isinstance(strings, tuple) and not all(strings)) or entry.fuzzy:
            missing.append((context, text))
    assert missing == []


def test_translations_keep_their_placeholders() -> None:
    # babel's own checks: the same %(name)s placeholders as the message, plural forms.
    problems = [
        (message.id, errors)
        for message, errors in catalogue().check()
        if errors  # type: ignore[attr-defined]
    ]
    assert problems == []


@pytest.mark.parametrize(
    ("cookie", "header", "expected"),
    [
        (None, None, "en"),
        (None, "ru-RU,ru;q=0.9,en-US;q=0.8", "ru"),
        (None, "de-DE,de;q=0.9,ru;q=0.5,en;q=0.3", "ru"),
        (None, "en;q=0.2, ru;q=0.8", "ru"),
        (None, "fr, de", "en"),
        (None, "ru;q=0, en", "en"),
        (None, "ru;q=garbage", "en"),
        ("en", "ru-RU", "en"),
        ("ru", "en-US", "ru"),
        ("xx", "ru", "ru"),
    ],
)
def test_the_language_is_the_switch_then_the_browser_then_english(
    cookie: str | None, header: str | None, expected: str
) -> None:
    assert i18n.choose(cookie, header).code == expected


async def test_pages_follow_accept_language(web: httpx.AsyncClient) -> None:
    russian = await web.get("/", headers={"Accept-Language": "ru-RU,ru;q=0.9"})
    english = await web.get("/", headers={"Accept-Language": "en-GB"})

    assert '<html lang="ru">' in russian.text
    assert "Токен администратора" in russian.text
    assert russian.headers["content-language"] == "ru"
    assert '<html lang="en">' in english.text
    assert "Admin token" in english.text
    assert "Accept-Language" in english.headers["vary"]


async def test_the_switch_sticks_and_returns_to_the_same_page(
    web: httpx.AsyncClient, services: object
) -> None:
    await add(services, account())  # type: ignore[arg-type]
    await log_in(web)
    target = f"/ui/accounts/{ACCOUNT_ID}?contacts=unsynced"

    switched = await web.get("/ui/language", params={"to": "ru", "next": target})

    assert switched.status_code == 303
    assert switched.headers["location"] == target
    assert "amosync_lang=ru" in switched.headers["set-cookie"]
    page = await web.get(target, headers={"Accept-Language": "en-US"})
    assert '<html lang="ru">' in page.text
    assert "Синхронизировать" in page.text


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/", "/\\evil.example", "/ui/../x", "javascript:x"],
)
async def test_the_switch_never_leads_to_another_site(web: httpx.AsyncClient, target: str) -> None:
    response = await web.get("/ui/language", params={"to": "ru", "next": target})

    assert response.status_code == 303
    assert response.headers["location"] == "/"


async def test_an_unknown_language_changes_nothing(web: httpx.AsyncClient) -> None:
    response = await web.get("/ui/language", params={"to": "xx", "next": "/"})

    assert response.status_code == 303
    assert "set-cookie" not in response.headers


async def test_error_pages_are_translated(web: httpx.AsyncClient) -> None:
    await log_in(web)

    page = await web.get("/ui/accounts/999", headers={"Accept-Language": "ru"})

    assert page.status_code == 404
    assert "Такого аккаунта нет" in page.text
