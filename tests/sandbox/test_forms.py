"""The sandbox's form parser reads bodies exactly as urllib's `parse_qsl` does."""

from __future__ import annotations

import random
from urllib.parse import parse_qsl, urlencode

import pytest

from amosync.sandbox.forms import parse_form, php_params
from amosync.unisender.client import encode_import
from amosync.unisender.models import ImportRow


@pytest.mark.parametrize(
    "body",
    [
        "",
        "a=1&b=2",
        "a=&b&=c&&",
        "name=Ann+Smith&plus=%2B1&sp=a%20b",
        "k%5B0%5D%5B1%5D=x%40y.z&k[1][0]=raw",
        "bad=%zz%4&half=%e2%82&cyr=%D0%98%D0%B2%D0%B0%D0%BD",
        "eq=a=b=c&amp=%26&hash=%23",
        "raw=Иван Петров&emoji=%F0%9F%98%80",
    ],
)
def test_parse_form_is_parse_qsl(body: str) -> None:
    assert parse_form(body) == parse_qsl(body, keep_blank_values=True)


def test_parse_form_is_parse_qsl_on_random_forms() -> None:
    rng = random.Random(7)
    # Characters, and pieces of escapes: valid, truncated, invalid, split UTF-8 sequences.
    alphabet = [*"ab[]=&%+ 0123456789ABCDEFzИ@.\u00e9Ð", "%D0", "%98", "%E2%82", "%AC", "%zz"]
    for _ in range(2000):
        body = "".join(rng.choice(alphabet) for _ in range(rng.randrange(40)))
        assert parse_form(body) == parse_qsl(body, keep_blank_values=True), body
        encoded = urlencode([(body, body[::-1])])
        assert parse_form(encoded) == parse_qsl(encoded, keep_blank_values=True)


def test_an_import_body_parses_into_its_rows() -> None:
    rows = [ImportRow(email=f"user{i}@example.com", name=f"Имя {i} & Co") for i in range(3)]
    params = php_params(parse_form(encode_import("key", rows, 12).decode()))
    assert params["field_names"] == ["email", "Name", "email_list_ids"]
    assert params["data"][2] == ["user2@example.com", "Имя 2 & Co", "12"]
    assert params["api_key"] == "key"
