"""Fields beside the address (SPEC §8 `fields`) end to end: the full sync and contact
webhooks put the phone, the tags and custom fields in Unisender's columns."""

from __future__ import annotations

from typing import Any

from amosync.sandbox.contacts import build_fields
from tests.stack import ACCOUNT_ID, UNISENDER_KEY, Stack, stack


def contact(s: Stack, email: str) -> dict[str, Any]:
    found = s.sandbox.unisender.contact(UNISENDER_KEY, email)
    assert found is not None, email
    return found


def creations(s: Stack) -> int:
    return s.sandbox.calls.count_where(api="unisender", path="/ru/api/createField")


def city(field_id: int, value: str) -> dict[str, Any]:
    return {
        "field_id": field_id,
        "field_name": "Город",
        "field_code": None,
        "field_type": "text",
        "values": [{"value": value}],
    }


async def test_phone_tags_and_a_custom_field_arrive_by_full_sync_and_webhook(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        await s.install()
        amo = s.sandbox.amocrm
        city_id = int(amo.add_contact_field(ACCOUNT_ID, "Город")["id"])
        fields = build_fields(["ann@example.com"], ["8 (926) 123-23-23"]) or []
        ann = amo.add_contact(
            ACCOUNT_ID,
            name="Ann",
            custom_fields_values=[*fields, city(city_id, "Москва")],
            tags=["vip", "Выставка"],
        )
        # A phone no one can dial is left out; the address still syncs.
        amo.add_contact(ACCOUNT_ID, name="Bob", emails=["bob@example.com"], phones=["12"])
        await s.store_settings(
            {
                "fields": {
                    "phone": True,
                    "tags": True,
                    "custom": [{"amocrm_field_id": city_id, "unisender_field": "city"}],
                }
            },
        )
        await s.connect_unisender()
        await s.settle()

        got = contact(s, "ann@example.com")
        assert got["phone"] == "+79261232323"
        assert got["tags"] == ["vip", "Выставка"]
        assert got["fields"]["city"] == "Москва"
        assert got["fields"]["Name"] == "Ann"
        bob = contact(s, "bob@example.com")
        assert bob["phone"] is None
        assert s.members() == {"ann@example.com", "bob@example.com"}
        assert creations(s) == 1

        # A webhook carries the new value; the field exists now and is not created again.
        amo.update_contact(
            ACCOUNT_ID, ann["id"], custom_fields_values=[*fields, city(city_id, "Тверь")]
        )
        await s.deliver_webhooks()
        assert contact(s, "ann@example.com")["fields"]["city"] == "Тверь"
        assert creations(s) == 1


async def test_without_fields_configured_rows_carry_only_the_address_and_name(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        await s.install()
        s.sandbox.amocrm.add_contact(
            ACCOUNT_ID,
            name="Ann",
            emails=["ann@example.com"],
            phones=["+79261232323"],
            tags=["vip"],
        )
        await s.connect_unisender()
        await s.settle()
        got = contact(s, "ann@example.com")
        assert (got["phone"], got["tags"]) == (None, [])
        assert creations(s) == 0
