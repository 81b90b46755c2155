"""The one check of an amoCRM account's host name, for every place that takes one.

The install call's `referer`, the base URL the code is exchanged at, and the origins the
widget's CORS answers all read a host name through `host_name`, so what one accepts the
others cannot refuse (or the other way round), and a name a browser or an HTTP client would
read differently (`evil.com\\.amocrm.ru`, `x@evil.com`, `acme.amocrm.ru:8443`) never gets
through. Deliberately stricter than URL parsers: a DNS name in ASCII (IDNs in punycode),
labels of 1-63 letters, digits and inner hyphens, no empty label, at most 253 characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# An optional http(s) scheme, then the authority, then anything from the first "/" on.
_REFERER = re.compile(r"(?:https?://)?(?P<host>[^/?#]*)(?P<rest>(?:[/?#].*)?)", re.DOTALL)
MAX_HOST = 253


class InvalidHost(ValueError):
    """Not a host name (or not one of an allowed domain's accounts)."""


def is_label(label: str) -> bool:
    """One DNS label: 1-63 ASCII letters, digits and inner hyphens (lower case)."""
    return _LABEL.fullmatch(label) is not None


def is_host_name(host: str) -> bool:
    """A lower-case DNS name of ASCII labels, without port, user or trailing dot."""
    return 0 < len(host) <= MAX_HOST and all(is_label(part) for part in host.split("."))


def host_name(value: str) -> str:
    """The host name in `acme.amocrm.ru`, `https://acme.amocrm.ru` or `https://acme.amocrm.ru/…`.

    Lower-cased. Raises `InvalidHost` for anything else: a port, user info, a backslash, a
    percent escape, whitespace or other non-ASCII, an empty or malformed label.
    """
    found = _REFERER.fullmatch(value) if value.isascii() and value.isprintable() else None
    # A backslash anywhere: browsers read it as "/", URL parsers as part of the host.
    if found is None or "\\" in value or any(c.isspace() for c in value):
        raise InvalidHost(f"not a host name: {value[:100]!r}")
    host = found["host"].lower()
    if not is_host_name(host):
        raise InvalidHost(f"not a host name: {value[:100]!r}")
    return host


def account_host(value: str, allowed_domains: Iterable[str]) -> str:
    """The host name of an account of one of `allowed_domains` (`acme.amocrm.ru`).

    It must be a subdomain of an allowed domain: the bare domain (`amocrm.ru`) is amoCRM's
    own site, not an account. Raises `InvalidHost` otherwise.
    """
    host = host_name(value)
    domains = [d.strip().lower().lstrip(".") for d in allowed_domains]
    if any(domain and host.endswith("." + domain) for domain in domains):
        return host
    raise InvalidHost(f"not an account domain of {', '.join(domains)}: {host!r}")
