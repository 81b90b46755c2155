"""A contact's phone, tags and custom fields as Unisender columns (SPEC §8 `fields`), from
the shapes amoCRM API v4 gives (tests/fixtures/amocrm/api/contacts_page_every_field_type.json
has one field of every type, with its source)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from amosync.accounts.settings import CustomPair, FieldSettings
from amosync.segments.fields import columns, field_text, phone, tags_column

PAGE = Path(__file__).parent.parent / "fixtures" / "amocrm" / "api"
CONTACTS = json.loads((PAGE / "contacts_page_every_field_type.json").read_text())["_embedded"][
    "contacts"
]
MARIA = CONTACTS[0]["custom_fields_values"]  # every field type
PETROV = CONTACTS[1]["custom_fields_values"]  # object values only, and an address
NULL_FIELDS = CONTACTS[-1]["custom_fields_values"]  # null, as activepieces' sample has it


def phones(*texts: Any, field_code: str | None = "PHONE") -> list[dict[str, Any]]:
    return [
        {
            "field_id": 264909,
            "field_name": "Телефон",
            "field_code": field_code,
            "field_type": "multitext",
            "values": [{"value": text, "enum_id": 524193, "enum_code": "WORK"} for text in texts],
        }
    ]


# --- phone ----------------------------------------------------------------------------------


def test_a_russian_number_written_locally_becomes_international() -> None:
    assert phone(phones("8 (926) 123-23-23"), "RU") == "+79261232323"


def test_the_first_valid_phone_wins_and_invalid_ones_are_skipped() -> None:
    values = phones("123", "не звонить", {"number": "+79990000000"}, None, "+7 916 123-45-67")
    assert phone(values, "RU") == "+79161234567"
    assert phone(phones("+7 916 123-45-67", "8 (926) 123-23-23"), "RU") == "+79161234567"


def test_the_region_reads_numbers_without_a_country_code() -> None:
    assert phone(phones("(650) 253-0000"), "US") == "+16502530000"
    assert phone(phones("+44 20 7946 0958"), "RU") == "+442079460958"  # its own code wins


def test_no_valid_phone_is_none() -> None:
    assert phone(phones("123", ""), "RU") is None
    assert phone(phones(), "RU") is None
    assert phone(None, "RU") is None
    assert phone(NULL_FIELDS, "RU") is None
    # Only fields coded PHONE are phones, whatever their name says.
    assert phone(phones("8 (926) 123-23-23", field_code=None), "RU") is None


def test_the_fixture_contact_phone() -> None:
    assert phone(MARIA, "RU") == "+79161234567"
    assert phone(PETROV, "RU") is None


# --- field_text -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field_id", "text"),
    [
        (264907, "Директор"),  # text
        (301010, "42"),  # numeric, sent as a string
        (301011, "1"),  # checkbox
        (301012, "Выставка"),  # select: the enum's text
        (301013, "CRM, Рассылки"),  # multiselect: every value
        (301014, "2023-11-15"),  # date, unix seconds
        (301015, "1990-01-01"),  # birthday
        (301016, "2024-12-02 14:33:20"),  # date_time
        (301017, "https://example.com/maria"),  # url
        (301018, "Перезвонить\nпосле обеда"),  # textarea
        (301019, "Женский"),  # radiobutton
        (301021, "Москва, 125009"),  # smart_address: its parts
        (301025, "1500.5"),  # monetary
        (301026, "yandex"),  # tracking_data
    ],
)
def test_every_field_type_reads_as_text(field_id: int, text: str) -> None:
    assert field_text(MARIA, field_id) == text


@pytest.mark.parametrize(
    "field_id",
    [
        301022,  # legal_entity: an object
        301023,  # file: an object
        301024,  # chained_list: no value at all
        301027,  # a list as the value
        999999,  # a field the contact does not have
    ],
)
def test_values_that_are_no_text_are_none(field_id: int) -> None:
    assert field_text(MARIA, field_id) is None


def test_object_values_are_skipped_beside_text_ones() -> None:
    values = [
        {
            "field_id": 7,
            "field_type": "text",
            "values": [{"value": {"name": "ООО"}}, {"value": " Москва "}, {"value": ["x"]}, {}],
        }
    ]
    assert field_text(values, 7) == "Москва"


def test_a_date_at_midnight_in_moscow_is_that_date() -> None:
    # 2023-11-15 00:00 MSK is 2023-11-14 21:00 UTC.
    values = [{"field_id": 8, "field_type": "date", "values": [{"value": 1700006400 - 3 * 3600}]}]
    assert field_text(values, 8) == "2023-11-15"


def test_a_contact_without_fields_has_no_text() -> None:
    assert field_text(None, 301012) is None
    assert field_text(NULL_FIELDS, 301012) is None
    assert field_text([{"field_id": 5, "values": None}, "junk"], 5) is None


# --- tags -----------------------------------------------------------------------------------


def test_tags_are_comma_joined_first_ten_in_order() -> None:
    tags = [f"tag{i}" for i in range(12)]
    assert tags_column(tags) == ",".join(f"tag{i}" for i in range(10))
    assert tags_column(["vip", "Выставка 2026"]) == "vip,Выставка 2026"


def test_tags_without_names_are_none() -> None:
    assert tags_column([]) is None
    assert tags_column(None) is None
    assert tags_column(["", "  "]) is None


def test_a_comma_in_a_tag_does_not_split_it_and_duplicates_count_once() -> None:
    assert tags_column(["a,b", "VIP", "vip", " c "]) == "a b,VIP,c"


# --- columns --------------------------------------------------------------------------------


def test_columns_holds_what_the_settings_send_and_the_contact_has() -> None:
    settings = FieldSettings(
        phone=True,
        tags=True,
        custom=[
            CustomPair(amocrm_field_id=301012, unisender_field="source"),
            CustomPair(amocrm_field_id=301013, unisender_field="interests"),
            CustomPair(amocrm_field_id=301022, unisender_field="company"),  # an object
            CustomPair(amocrm_field_id=424242, unisender_field="absent"),
        ],
    )
    assert columns(MARIA, ["vip", "Выставка 2026"], settings) == {
        "phone": "+79161234567",
        "tags": "vip,Выставка 2026",
        "source": "Выставка",
        "interests": "CRM, Рассылки",
    }


def test_columns_with_default_settings_is_empty() -> None:
    assert columns(MARIA, ["vip"], FieldSettings()) == {}


def test_columns_leaves_out_a_phone_or_tags_the_contact_lacks() -> None:
    settings = FieldSettings(phone=True, tags=True)
    assert columns(phones("123"), [], settings) == {}
    assert columns(None, None, settings) == {}


def test_a_custom_pair_never_fills_a_column_of_unisender_s_own() -> None:
    settings = FieldSettings(
        custom=[
            CustomPair(amocrm_field_id=301012, unisender_field="email_status"),
            CustomPair(amocrm_field_id=301012, unisender_field="Phone"),
            CustomPair(amocrm_field_id=264907, unisender_field="position"),
        ]
    )
    assert columns(MARIA, [], settings) == {"position": "Директор"}


def test_the_phone_region_setting_is_used() -> None:
    settings = FieldSettings(phone=True, phone_region="US")
    assert columns(phones("(650) 253-0000"), [], settings) == {"phone": "+16502530000"}
