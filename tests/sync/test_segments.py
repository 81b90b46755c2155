"""Segment lists by tags (SPEC §8) end to end: the sandbox's amoCRM and Unisender over real
HTTP, the full sync and contact webhooks."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select, update

from amosync.db.models import Account, SegmentMember
from amosync.segments.members import rule_counts
from tests.stack import ACCOUNT_ID, UNISENDER_KEY, Stack, stack


def members(s: Stack, list_id: int) -> set[str]:
    return {m.lower() for m in s.sandbox.unisender.list_members(UNISENDER_KEY, list_id)}


async def configure(s: Stack, settings: dict[str, Any]) -> None:
    async with s.services.sessions() as session, session.begin():
        await session.execute(
            update(Account).where(Account.id == ACCOUNT_ID).values(settings=settings)
        )


async def main_list(s: Stack) -> int:
    async with s.services.sessions() as session:
        list_id = await session.scalar(select(Account.list_id).where(Account.id == ACCOUNT_ID))
    assert list_id is not None
    return list_id


async def delivered(s: Stack) -> None:
    await s.sandbox.amocrm.flush_webhooks()
    await s.settle()


async def installed_with_lists(s: Stack, *titles: str) -> list[int]:
    """An installed account whose Unisender key has these lists (not yet connected)."""
    await s.install()
    s.sandbox.unisender.add_key(UNISENDER_KEY)
    return [s.sandbox.unisender.create_list(UNISENDER_KEY, title) for title in titles]


async def test_a_tagged_contact_is_in_its_segment_list_after_the_full_sync(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        vip, partners = await installed_with_lists(s, "VIP", "Partners")
        amo = s.sandbox.amocrm
        ann = amo.add_contact(ACCOUNT_ID, name="Ann", emails=["ann@example.com"], tags=["VIP"])
        amo.add_contact(ACCOUNT_ID, name="Bob", emails=["bob@example.com"])
        amo.add_contact(ACCOUNT_ID, name="Cy", emails=["cy@example.com"], tags=["partner", "other"])
        amo.add_contact(ACCOUNT_ID, name="Di", emails=[], tags=["vip"])  # no address
        await configure(
            s,
            {
                "lists": [
                    {"list_id": vip, "tags_any": ["vip"]},
                    {"list_id": partners, "tags_any": ["Partner", "reseller"]},
                ]
            },
        )
        await s.connect_unisender()
        await s.settle()

        main = await main_list(s)
        assert members(s, main) == {"ann@example.com", "bob@example.com", "cy@example.com"}
        assert members(s, vip) == {"ann@example.com"}
        assert members(s, partners) == {"cy@example.com"}
        async with s.services.sessions() as session:
            assert await rule_counts(session, ACCOUNT_ID) == {vip: 1, partners: 1}
            stored = await session.scalar(
                select(SegmentMember.amocrm_id).where(SegmentMember.list_id == vip)
            )
        assert stored == ann["id"]


async def test_an_account_without_rules_keeps_one_list(database_url: str) -> None:
    async with stack(database_url) as s:
        (other,) = await installed_with_lists(s, "Other")
        s.sandbox.amocrm.add_contact(
            ACCOUNT_ID, name="Ann", emails=["ann@example.com"], tags=["vip"]
        )
        await s.connect_unisender()
        await s.settle()
        assert members(s, await main_list(s)) == {"ann@example.com"}
        assert members(s, other) == set()
        async with s.services.sessions() as session:
            assert await rule_counts(session, ACCOUNT_ID) == {}


async def test_removing_the_tag_by_webhook_excludes_unless_another_match_shares_it(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        (vip,) = await installed_with_lists(s, "VIP")
        amo = s.sandbox.amocrm
        ann = amo.add_contact(ACCOUNT_ID, name="Ann", emails=["shared@example.com"], tags=["vip"])
        twin = amo.add_contact(
            ACCOUNT_ID, name="Ann at work", emails=["Shared@example.com"], tags=["vip"]
        )
        solo = amo.add_contact(ACCOUNT_ID, name="Solo", emails=["solo@example.com"], tags=["vip"])
        await configure(s, {"lists": [{"list_id": vip, "tags_any": ["vip"]}]})
        await s.connect_unisender()
        await s.settle()
        main = await main_list(s)
        assert members(s, vip) == {"shared@example.com", "solo@example.com"}

        # The tag leaves one contact: within seconds its address leaves the list.
        started = time.monotonic()
        amo.edit_tags(ACCOUNT_ID, solo["id"], delete=[{"name": "vip"}])
        await delivered(s)
        assert time.monotonic() - started < 3
        assert "solo@example.com" not in members(s, vip)
        assert "solo@example.com" in members(s, main)  # excluded from the segment only

        # One of two contacts sharing an address stops matching: the other still does.
        amo.edit_tags(ACCOUNT_ID, ann["id"], delete=[{"name": "vip"}])
        await delivered(s)
        assert members(s, vip) == {"shared@example.com"}

        # And when the other is deleted, nobody that matches has the address any more.
        amo.delete_contact(ACCOUNT_ID, twin["id"])
        await delivered(s)
        assert members(s, vip) == set()
        assert members(s, main) == {"shared@example.com", "solo@example.com"}

        # A tag added back brings the address back.
        amo.edit_tags(ACCOUNT_ID, solo["id"], add=[{"name": "VIP"}])
        await delivered(s)
        assert "solo@example.com" in members(s, vip)


async def test_a_deleted_contact_leaves_its_segment_list(database_url: str) -> None:
    async with stack(database_url) as s:
        (vip,) = await installed_with_lists(s, "VIP")
        amo = s.sandbox.amocrm
        ann = amo.add_contact(ACCOUNT_ID, name="Ann", emails=["ann@example.com"], tags=["vip"])
        await configure(s, {"lists": [{"list_id": vip, "tags_any": ["vip"]}]})
        await s.connect_unisender()
        await s.settle()
        assert members(s, vip) == {"ann@example.com"}
        amo.delete_contact(ACCOUNT_ID, ann["id"])
        await delivered(s)
        assert members(s, vip) == set()
        async with s.services.sessions() as session:
            assert await rule_counts(session, ACCOUNT_ID) == {}


async def test_the_full_sync_excludes_a_contact_whose_tag_went_while_unwatched(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        (vip,) = await installed_with_lists(s, "VIP")
        amo = s.sandbox.amocrm
        ann = amo.add_contact(ACCOUNT_ID, name="Ann", emails=["ann@example.com"], tags=["vip"])
        await configure(s, {"lists": [{"list_id": vip, "tags_any": ["vip"]}]})
        await s.connect_unisender()
        await s.settle()
        amo.webhooks_enabled = False
        amo.edit_tags(ACCOUNT_ID, ann["id"], delete=[{"name": "vip"}])
        started = await s.http.post("/sync", json={"account_id": ACCOUNT_ID})
        assert started.status_code == 202
        await s.settle()
        assert members(s, vip) == set()
        assert members(s, await main_list(s)) == {"ann@example.com"}
