"""For every error code the service can answer, and every account problem, the widget has
a Russian and an English text. The codes are read from the service's source
(tests/widget/codes.py), so a new code without texts fails here; that the texts are shown
is checked in tests/widget/test_browser.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.widget.codes import CLIENT_CODES, problem_codes, service_codes

I18N = Path(__file__).parents[2] / "src" / "amosync" / "widget" / "src" / "i18n"
LANGUAGES = {
    locale: json.loads((I18N / f"{locale}.json").read_text(encoding="utf-8"))
    for locale in ("ru", "en")
}
CYRILLIC = re.compile("[а-яё]", re.IGNORECASE)
SERVICE_CODES = service_codes()


def test_the_source_reading_finds_each_kind_of_code() -> None:
    # One code of each way the service names one; if the reading broke, these would go.
    expected = {
        "not_found": "errors.py",  # an AppError subclass's `code`
        "account_not_found": "accounts/service.py",  # NotFound(..., code="...")
        "widget_token_expired": "http/disposable.py",  # code=<module constant>
        "internal_error": "app.py",  # error_response(500, "...", ...)
        "origin_not_allowed": "http/middleware.py",  # send_json_error(send, 403, "...", ...)
        "payload_too_large": "http/middleware.py",  # BodyRefused(413, "...", ...)
        "method_not_allowed": "app.py",  # the status-to-code table
        "http_error": "app.py",  # its default
        "invalid_request": "app.py",  # the 422 of request validation
        "malformed_webhook": "amocrm/webhooks.py",
    }
    for code, module in expected.items():
        assert code in SERVICE_CODES, code
        assert any(place.startswith(module + ":") for place in SERVICE_CODES[code]), code


def test_a_new_code_is_found(tmp_path: Path) -> None:
    (tmp_path / "feature.py").write_text(
        "from amosync.errors import BadRequest\n"
        "REASON = 'brand_new_reason'\n"
        "def check():\n"
        "    raise BadRequest('no', code='brand_new_code')\n"
        "def other():\n"
        "    raise BadRequest('no', code=REASON)\n",
        encoding="utf-8",
    )
    assert set(service_codes(tmp_path)) == {"brand_new_code", "brand_new_reason"}


@pytest.mark.parametrize("locale", ["ru", "en"])
def test_every_service_code_has_a_text(locale: str) -> None:
    errors = LANGUAGES[locale]["errors"]
    missing = {
        code: sorted(places)
        for code, places in SERVICE_CODES.items()
        if not isinstance(errors.get(code), str) or not errors[code].strip()
    }
    assert missing == {}, f"i18n/{locale}.json errors lack texts for {missing}"
    for code in CLIENT_CODES:
        assert errors.get(code, "").strip(), code


@pytest.mark.parametrize("locale", ["ru", "en"])
def test_every_problem_has_a_text(locale: str) -> None:
    problems = LANGUAGES[locale]["problems"]
    assert set(problems) == problem_codes()
    assert all(isinstance(text, str) and text.strip() for text in problems.values())


def test_no_text_for_a_code_the_service_no_longer_has() -> None:
    for locale, strings in LANGUAGES.items():
        stale = set(strings["errors"]) - set(SERVICE_CODES) - CLIENT_CODES
        assert stale == set(), f"i18n/{locale}.json has texts for unknown codes {stale}"


def test_russian_texts_are_russian_and_english_ones_are_not() -> None:
    for group in ("errors", "problems", "panel"):
        for key, russian in LANGUAGES["ru"][group].items():
            english = LANGUAGES["en"][group][key]
            assert CYRILLIC.search(russian), f"ru {group}.{key} is not Russian: {russian!r}"
            assert not CYRILLIC.search(english), f"en {group}.{key} is not English: {english!r}"
            assert russian != english
