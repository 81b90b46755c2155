"""A contact's e-mail addresses, as SPEC §4 defines them.

All values of the custom fields whose `field_code` is `EMAIL`, trimmed, de-duplicated
case-insensitively (the first spelling wins) and syntax-checked with email-validator, no DNS.

The address sent to Unisender is the trimmed original, not email-validator's `normalized`
form, which rewrites the domain (lower case, IDNA): the operator finds in Unisender and on
the dashboard exactly what amoCRM shows, and an address is later excluded under the very
spelling it was imported with. Comparisons never depend on spelling: `normalize_email`
(trimmed, lower case) is the key for de-duplication and for telling what was removed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

EMAIL_CODE = "EMAIL"


# `custom_fields_values` as amoCRM sends it: the client's validated dicts or a parsed page.
CustomFields = Iterable[Mapping[str, Any]]


@dataclass(slots=True)
class EmailSet:
    """A contact's addresses, first spellings kept, split by syntax."""

    valid: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)


def normalize_email(address: str) -> str:
    """The key under which two spellings of one address are the same."""
    return address.strip().lower()


# The plain ASCII shape almost every real address has, which email-validator always accepts:
# a dot-atom local part and a domain of letter-digit-hyphen labels ending in an alphabetic
# top-level domain (no "--", so no punycode to check). Full validation costs ~100 µs an
# address, which a sync of a million contacts cannot afford; anything outside this shape
# still goes to email-validator. tests/sync/test_mapping.py pins that the shortcut never
# accepts an address email-validator refuses.
_ATEXT = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
PLAIN_ADDRESS = re.compile(
    rf"(?i)^(?=.{{1,64}}@){_ATEXT}+(?:\.{_ATEXT}+)*@(?=.{{4,253}}$)(?:{_LABEL}\.)+([a-z]{{2,63}})$"
)
_SPECIAL = frozenset(SPECIAL_USE_DOMAIN_NAMES)


def _plain(address: str) -> bool:
    match = PLAIN_ADDRESS.match(address)
    return match is not None and "--" not in address and match.group(1).lower() not in _SPECIAL


@lru_cache(maxsize=65536)
def _validated(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def is_valid(address: str) -> bool:
    """Syntax only, no DNS: the common shape by a pattern, everything else by email-validator."""
    if len(address) > 254 or "@" not in address:
        return False
    return _plain(address) or _validated(address)


def email_values(custom_fields_values: CustomFields | None) -> list[str]:
    """Every EMAIL value, trimmed, in order; fields matched by code, never by position."""
    values: list[str] = []
    for custom_field in custom_fields_values or ():
        if custom_field.get("field_code") != EMAIL_CODE:
            continue
        for value in custom_field.get("values") or ():
            # Only strings are addresses: an object (file, legal entity), a list, a number
            # or an item that is not even a dict is skipped, never a failed contact.
            raw = value.get("value") if isinstance(value, dict) else None
            if isinstance(raw, str) and raw.strip():
                values.append(raw.strip())
    return values


def classify(values: Iterable[str]) -> EmailSet:
    """Trimmed values → valid and invalid addresses, de-duplicated case-insensitively."""
    result = EmailSet()
    seen: set[str] = set()
    for value in values:
        address = value.strip()
        key = address.lower()
        if not address or key in seen:
            continue
        seen.add(key)
        (result.valid if is_valid(address) else result.invalid).append(address)
    return result


def contact_emails(custom_fields_values: CustomFields | None) -> EmailSet:
    """A contact's addresses from its `custom_fields_values`."""
    return classify(email_values(custom_fields_values))


def unsynced_reason(emails: EmailSet) -> str | None:
    """`no_email`, `invalid_email`, or None when at least one address is valid."""
    if emails.valid:
        return None
    return "invalid_email" if emails.invalid else "no_email"
