"""The dashboard's languages: English (the source language of every message) and Russian.

Catalogues are gettext `.po` files in `locales/<code>/LC_MESSAGES/messages.po`, compiled in
memory when this module is imported (babel.messages), so there is no build step and no
compiled `.mo` that could fall behind its `.po`. The language is the `amosync_lang` cookie
when the operator picked one with the switch, else the best match of the browser's
`Accept-Language`, else English.

To add or change a message: mark it (`_()` in templates, `N_()`/`gettext` in Python), then

    pybabel extract -F babel.cfg -k N_ -o messages.pot .
    pybabel update -i messages.pot -d src/amosync/web/locales -N

and translate what is new in `ru/LC_MESSAGES/messages.po` (tests/web/test_i18n.py fails
while a message has no translation).
"""

from __future__ import annotations

import gettext as stdlib_gettext
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

LOCALES = ("en", "ru")
DEFAULT = "en"
COOKIE = "amosync_lang"
CATALOGUES = Path(__file__).parent / "locales"
NAMES = {"en": "English", "ru": "Русский"}


def N_(message: str) -> str:  # noqa: N802 - gettext's conventional "mark only" name
    """Marks a message for extraction; it is translated where it is shown."""
    return message


def load(code: str) -> stdlib_gettext.NullTranslations:
    """The compiled catalogue of `code` (English is the source: no catalogue needed)."""
    path = CATALOGUES / code / "LC_MESSAGES" / "messages.po"
    if code == "en" or not path.exists():
        return stdlib_gettext.NullTranslations()
    with path.open("rb") as source:
        catalogue = read_po(source, locale=code)
    compiled = BytesIO()
    write_mo(compiled, catalogue, use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled)


CATALOGS: dict[str, stdlib_gettext.NullTranslations] = {code: load(code) for code in LOCALES}


@dataclass(frozen=True)
class Language:
    """One request's language: translations and number formatting."""

    code: str

    @property
    def catalog(self) -> stdlib_gettext.NullTranslations:
        return CATALOGS[self.code]

    def gettext(self, message: str) -> str:
        return self.catalog.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.catalog.ngettext(singular, plural, n)

    def number(self, value: int | float | None) -> str:
        if value is None:
            return "—"
        return format_decimal(value, locale=self.code)

    def when(self, value: datetime | None) -> str:
        # One unambiguous form in both languages: operators compare it with logs.
        return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"

    def other(self) -> str:
        return "ru" if self.code == "en" else "en"


def parse_accept_language(header: str | None) -> list[str]:
    """Language codes of an `Accept-Language` header, most preferred first."""
    if not header:
        return []
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, position, tag.strip().lower()))
    return [tag for _, _, tag in sorted(ranked)]


def choose(cookie: str | None, accept_language: str | None) -> Language:
    """The language of a request: the operator's choice, else the browser's, else English."""
    if cookie in LOCALES:
        return Language(cookie)
    for tag in parse_accept_language(accept_language):
        primary = tag.split("-")[0]
        if primary in LOCALES:
            return Language(primary)
    return Language(DEFAULT)


def messages_for_script(language: Language, messages: dict[str, str]) -> dict[str, Any]:
    """The strings the dashboard script sets itself (statuses, counters), translated."""
    return {key: language.gettext(text) for key, text in messages.items()}
