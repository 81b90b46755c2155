"""The one host-name check behind the install's referer, its base URL and the widget's CORS."""

from __future__ import annotations

import pytest

from amosync.amocrm.client import account_base_url
from amosync.http.hosts import InvalidHost, account_host, host_name
from amosync.http.middleware import allowed_origin
from tests.http.referers import HOSTILE_REFERERS

ALLOWED = ["amocrm.ru", "amocrm.com", "kommo.com"]


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("acme.amocrm.ru", "acme.amocrm.ru"),
        ("ACME.Kommo.com", "acme.kommo.com"),
        ("https://acme.amocrm.com", "acme.amocrm.com"),
        ("http://acme.amocrm.ru/", "acme.amocrm.ru"),
        ("https://acme.amocrm.ru/leads/?x=1#y", "acme.amocrm.ru"),
        ("xn--80aswg.amocrm.ru", "xn--80aswg.amocrm.ru"),  # an IDN, in punycode
        ("a1-b2.amocrm.ru", "a1-b2.amocrm.ru"),
        ("a" * 63 + ".amocrm.ru", "a" * 63 + ".amocrm.ru"),
    ],
)
def test_account_hosts_are_read_in_every_form_amocrm_sends(value: str, host: str) -> None:
    assert account_host(value, ALLOWED) == host
    # The base URL is built from the same reading: what one accepts, the other can call.
    assert account_base_url(None, value) == f"https://{host}"


@pytest.mark.parametrize("value", HOSTILE_REFERERS)
def test_hostile_referers_are_no_account_host(value: str) -> None:
    with pytest.raises(InvalidHost):
        account_host(value, ALLOWED)


@pytest.mark.parametrize("value", [v for v in HOSTILE_REFERERS if "." in v and "amocrm" in v])
def test_what_the_referer_check_refuses_is_no_origin_either(value: str) -> None:
    scheme = "" if value.startswith(("http", "ftp", "javascript", "//")) else "https://"
    assert not allowed_origin(scheme + value, (".amocrm.ru",))


def test_the_check_agrees_with_the_base_url_for_anything_it_accepts() -> None:
    for value in HOSTILE_REFERERS:
        try:
            host = host_name(value)
        except InvalidHost:
            with pytest.raises(ValueError, match="domain"):
                account_base_url(None, value)
            continue
        assert account_base_url(None, value) in (f"https://{host}", f"https://{host}.amocrm.ru")
