"""The §8 settings model: shape, limits, and the tolerant reader of what is stored."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from amosync.accounts.settings import MAX_CUSTOM, AccountSettings, ListRule, account_settings

SPEC_EXAMPLE = {
    "fields": {
        "phone": False,
        "phone_region": "RU",
        "tags": False,
        "custom": [{"amocrm_field_id": 55123, "unisender_field": "city"}],
    },
    "lists": [
        {"list_id": 321, "tags_any": ["vip", "partner"]},
        {"list_id": 654, "lead_statuses": [{"pipeline_id": 7, "status_id": 142}]},
    ],
    "consent": {"enabled": True, "tag": "unsubscribed", "note": True},
}


def test_the_spec_example_reads_back_unchanged() -> None:
    settings = AccountSettings.model_validate(SPEC_EXAMPLE)
    dumped = settings.model_dump(mode="json")
    # Each rule reads back with both conditions, the one it lacks as an empty list.
    assert dumped["lists"] == [
        {"list_id": 321, "tags_any": ["vip", "partner"], "lead_statuses": []},
        {"list_id": 654, "tags_any": [], "lead_statuses": [{"pipeline_id": 7, "status_id": 142}]},
    ]
    assert {k: v for k, v in dumped.items() if k != "lists"} == {
        k: v for k, v in SPEC_EXAMPLE.items() if k != "lists"
    }
    assert settings.wants_leads
    assert settings.wanted_statuses() == [(7, 142)]


def test_every_key_is_optional() -> None:
    settings = AccountSettings.model_validate({})
    assert settings.lists == []
    assert settings.fields.custom == []
    assert settings.fields.phone_region == "RU"
    assert not settings.wants_leads


@pytest.mark.parametrize(
    "body",
    [
        {"colour": "red"},
        {"fields": {"phone": "yes"}},
        {"fields": {"phone_region": "russia"}},
        {"lists": [{"list_id": 1}]},
        {"lists": [{"list_id": "1", "tags_any": ["a"]}]},
        {"lists": [{"list_id": 1, "tags_any": ["  "]}]},
        {
            "fields": {
                "custom": [
                    {"amocrm_field_id": i + 1, "unisender_field": f"f{i}"}
                    for i in range(MAX_CUSTOM + 1)
                ]
            }
        },
    ],
)
def test_bad_shapes_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AccountSettings.model_validate(body)


def test_a_rule_needs_every_condition_it_has() -> None:
    rule = ListRule.model_validate(
        {
            "list_id": 5,
            "tags_any": ["VIP"],
            "lead_statuses": [{"pipeline_id": 7, "status_id": 142}],
        }
    )
    assert rule.matches({"vip"}, {(7, 142)})
    assert not rule.matches({"vip"}, {(7, 143)})
    assert not rule.matches({"other"}, {(7, 142)})


def test_the_reader_keeps_what_is_valid_and_defaults_the_rest() -> None:
    stored = {
        "fields": {"phone": "not a bool"},
        "lists": [{"list_id": 9, "tags_any": ["a"]}, {"list_id": -1}],
        "consent": {"enabled": False},
    }
    settings = account_settings(stored)
    assert settings.fields.phone is False
    assert [rule.list_id for rule in settings.lists] == [9]
    assert settings.consent.enabled is False
    assert account_settings(None) == AccountSettings()
