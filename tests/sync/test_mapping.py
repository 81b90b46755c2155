"""A contact's addresses (SPEC §4): EMAIL fields by code, trimmed, de-duplicated, checked."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from amosync.sync.mapping import (
    PLAIN_ADDRESS,
    _plain,
    classify,
    contact_emails,
    is_valid,
    unsynced_reason,
)


def field(code: str | None, *values: str) -> dict[str, object]:
    return {"field_code": code, "values": [{"value": v} for v in values]}


def test_only_email_fields_count_trimmed_and_deduplicated() -> None:
    emails = contact_emails(
        [
            field("PHONE", "+79990000000"),
            field("EMAIL", " Ann@Example.com ", "ann@example.com", "bob@example.com"),
            field(None, "not@counted.com"),
            field("EMAIL", "ANN@EXAMPLE.COM", "broken@", ""),
        ]
    )
    assert emails.valid == ["Ann@Example.com", "bob@example.com"]
    assert emails.invalid == ["broken@"]


def test_reasons() -> None:
    assert unsynced_reason(contact_emails(None)) == "no_email"
    assert unsynced_reason(contact_emails([field("PHONE", "+7")])) == "no_email"
    assert unsynced_reason(classify(["nope", "a@"])) == "invalid_email"
    assert unsynced_reason(classify(["nope", "a@example.com"])) is None


def test_checks_syntax_without_dns() -> None:
    assert is_valid("user@example.com")
    assert is_valid("user@xn--80ak6aa92e.com")  # punycode goes to email-validator
    assert is_valid("юзер@пример.рф")
    for bad in ("a..b@example.com", "a@b.test", "a@localhost", "@example.com", "a@x.123"):
        assert not is_valid(bad), bad


def _accepted(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


ATOM = st.text(alphabet="abcXYZ019!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=8)
LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
TLD = st.sampled_from(["com", "ru", "io", "test", "local", "localhost", "arpa", "xy", "онлайн"])
PLAIN_SHAPED = st.builds(
    lambda atoms, labels, tld: ".".join(atoms) + "@" + ".".join([*labels, tld]),
    st.lists(ATOM, min_size=1, max_size=4),
    st.lists(LABEL, min_size=1, max_size=3),
    TLD,
)


@settings(max_examples=500, deadline=None)
@given(PLAIN_SHAPED)
def test_the_fast_path_never_accepts_what_email_validator_refuses(address: str) -> None:
    if _plain(address):
        assert PLAIN_ADDRESS.match(address)
        assert _accepted(address), address


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab.@-_+xn1é", max_size=30))
def test_any_string_gets_the_same_answer_as_email_validator(address: str) -> None:
    assert is_valid(address) == (len(address) <= 254 and "@" in address and _accepted(address))
