"""A contact's addresses (SPEC §4): EMAIL fields by code, trimmed, de-duplicated, checked."""

from __future__ import annotations

import time

from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from amosync.amocrm.models import Contact
from amosync.sync.mapping import (
    PLAIN_ADDRESS,
    EmailSet,
    _plain,
    classify,
    contact_emails,
    is_valid,
    normalize_email,
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


def test_pydantic_contacts_from_the_api_give_the_same_answer() -> None:
    """The amoCRM client's validated contact and a parsed JSON page give the same answer."""
    page_item = {
        "id": 1,
        "name": "Ann",
        "custom_fields_values": [
            {"field_id": 1, "field_code": "PHONE", "values": [{"value": "+7999", "enum_id": 3}]},
            {
                "field_id": 2,
                "field_code": "EMAIL",
                "values": [{"value": "ann@example.com", "enum_code": "WORK"}, {"value": "x@"}],
            },
            {"field_id": 3, "field_code": "EMAIL", "values": [{"value": 42}, {"value": None}]},
        ],
    }
    model = Contact.model_validate(page_item)

    expected = EmailSet(valid=["ann@example.com"], invalid=["x@"])
    assert contact_emails(model.custom_fields_values) == expected
    assert contact_emails(page_item["custom_fields_values"]) == expected


def test_fields_are_matched_by_code_not_by_position_or_name() -> None:
    emails = contact_emails(
        [
            {"field_code": None, "field_name": "Email", "values": [{"value": "name@example.com"}]},
            field("email", "lower@example.com"),
            field("PHONE", "phone@example.com"),
            field("EMAIL", "real@example.com"),
        ]
    )
    assert emails == EmailSet(valid=["real@example.com"], invalid=[])


def test_the_address_sent_is_the_trimmed_original_not_the_normalized_form() -> None:
    # email-validator would send "Ann@example.com" and "user@пример.рф" (lower-cased domain).
    emails = contact_emails([field("EMAIL", "  Ann@EXAMPLE.com\t", "user@ПРИМЕР.РФ")])
    assert emails.valid == ["Ann@EXAMPLE.com", "user@ПРИМЕР.РФ"]


def test_normalize_email_is_the_comparison_key() -> None:
    assert normalize_email("  Ann@EXAMPLE.com ") == "ann@example.com"
    assert normalize_email("ann@example.com") == normalize_email("ANN@example.COM")


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


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(["a@example.com", "A@Example.COM", " b@example.com", "c@", ""]), max_size=8
    )
)
def test_each_address_is_kept_once_in_its_first_spelling(values: list[str]) -> None:
    emails = classify(values)
    kept = emails.valid + emails.invalid
    keys = [normalize_email(a) for a in kept]
    assert len(keys) == len(set(keys))
    assert set(keys) == {normalize_email(v) for v in values if v.strip()}
    for address in kept:
        first = next(v.strip() for v in values if normalize_email(v) == normalize_email(address))
        assert address == first


def test_mapping_is_fast_enough_for_the_full_sync_benchmark() -> None:
    """The full sync targets 20,000 contacts/s overall; mapping must be a small part of it."""
    pages = [
        [
            field("PHONE", "+7 999 000-00-00"),
            field("EMAIL", f"user{i}@example{i % 500}.com", f"User{i}@Example{i % 500}.com"),
        ]
        for i in range(20_000)
    ]
    started = time.perf_counter()
    for custom_fields in pages:
        unsynced_reason(contact_emails(custom_fields))
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"{elapsed / len(pages) * 1e6:.1f} µs a contact"
