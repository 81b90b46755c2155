"""Segment lists by tags (SPEC §8) end to end: the sandbox's amoCRM and Unisender over real
HTTP, the full sync and contact webhooks."""

from __future__ import annotations

import re
import time

from sqlalchemy import select

from amosync.db.models import Account, PendingLead, SegmentMember
from amosync.sandbox.contacts import GENERATED_TAGS
from amosync.segments.members import rule_counts
from amosync.sync.mapping import contact_emails
from tests.stack import ACCOUNT_ID, UNISENDER_KEY, Stack, stack


def members(s: Stack, list_id: int) -> set[str]:
    return {m.lower() for m in s.sandbox.unisender.list_members(UNISENDER_KEY, list_id)}


async def connected_with_vip_rule(s: Stack, vip: int) -> None:
    """The rule "tagged vip → the VIP list" stored, then the key connected and the first
    sync (which applies it) done."""
    await s.store_settings({"lists": [{"list_id": vip, "tags_any": ["vip"]}]})
    await s.connect_unisender()
    await s.settle()


async def main_list(s: Stack) -> int:
    async with s.services.sessions() as session:
        list_id = await session.scalar(select(Account.list_id).where(Account.id == ACCOUNT_ID))
    assert list_id is not None
    return list_id


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
        await s.store_settings(
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

        # The synced view says which lists each contact's addresses are in (SPEC §8).
        synced = await s.http.get("/accounts/sync", params={"account_id": ACCOUNT_ID})
        lists = {item["name"]: item["lists"] for item in synced.json()["items"]}
        assert lists == {"Ann": [main, vip], "Bob": [main], "Cy": [main, partners]}


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
        await connected_with_vip_rule(s, vip)
        main = await main_list(s)
        assert members(s, vip) == {"shared@example.com", "solo@example.com"}

        # The tag leaves one contact: within seconds its address leaves the list.
        started = time.monotonic()
        amo.edit_tags(ACCOUNT_ID, solo["id"], delete=[{"name": "vip"}])
        await s.deliver_webhooks()
        assert time.monotonic() - started < 3
        assert "solo@example.com" not in members(s, vip)
        assert "solo@example.com" in members(s, main)  # excluded from the segment only

        # One of two contacts sharing an address stops matching: the other still does.
        amo.edit_tags(ACCOUNT_ID, ann["id"], delete=[{"name": "vip"}])
        await s.deliver_webhooks()
        assert members(s, vip) == {"shared@example.com"}

        # And when the other is deleted, nobody that matches has the address any more.
        amo.delete_contact(ACCOUNT_ID, twin["id"])
        await s.deliver_webhooks()
        assert members(s, vip) == set()
        assert members(s, main) == {"shared@example.com", "solo@example.com"}

        # A tag added back brings the address back.
        amo.edit_tags(ACCOUNT_ID, solo["id"], add=[{"name": "VIP"}])
        await s.deliver_webhooks()
        assert "solo@example.com" in members(s, vip)


async def test_a_deleted_contact_leaves_its_segment_list(database_url: str) -> None:
    async with stack(database_url) as s:
        (vip,) = await installed_with_lists(s, "VIP")
        amo = s.sandbox.amocrm
        ann = amo.add_contact(ACCOUNT_ID, name="Ann", emails=["ann@example.com"], tags=["vip"])
        await connected_with_vip_rule(s, vip)
        assert members(s, vip) == {"ann@example.com"}
        amo.delete_contact(ACCOUNT_ID, ann["id"])
        await s.deliver_webhooks()
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
        await connected_with_vip_rule(s, vip)
        amo.webhooks_enabled = False
        amo.edit_tags(ACCOUNT_ID, ann["id"], delete=[{"name": "vip"}])
        started = await s.http.post("/sync", json={"account_id": ACCOUNT_ID})
        assert started.status_code == 202
        await s.settle()
        assert members(s, vip) == set()
        assert members(s, await main_list(s)) == {"ann@example.com"}


PIPELINE = 3177727  # the sandbox account's main pipeline
WON, LOST = 142, 143


async def test_a_won_deal_puts_its_contacts_in_the_list_and_moving_or_deleting_it_excludes(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        await s.install()
        amo = s.sandbox.amocrm
        ann = amo.add_contact(ACCOUNT_ID, name="Ann", emails=["ann@example.com"])
        bob = amo.add_contact(ACCOUNT_ID, name="Bob", emails=["bob@example.com"])
        cy = amo.add_contact(ACCOUNT_ID, name="Cy", emails=["cy@example.com"])
        amo.add_contact(ACCOUNT_ID, name="Di", emails=["di@example.com"])
        amo.create_lead(ACCOUNT_ID, [cy["id"]], pipeline_id=PIPELINE, status_id=WON)
        amo.create_lead(ACCOUNT_ID, [ann["id"]], pipeline_id=PIPELINE, status_id=LOST)
        await s.connect_unisender()
        await s.settle()
        customers = s.sandbox.unisender.create_list(UNISENDER_KEY, "Customers")
        s.sandbox.calls.clear()
        answer = await s.http.put(
            f"/accounts/{ACCOUNT_ID}/settings",
            json={
                "lists": [
                    {
                        "list_id": customers,
                        "lead_statuses": [{"pipeline_id": PIPELINE, "status_id": WON}],
                    }
                ]
            },
        )
        assert answer.status_code == 200, answer.text
        await s.settle()
        # The full sync found the won deal through the leads filter, not deal by deal.
        assert members(s, customers) == {"cy@example.com"}
        paths = [call.path for call in s.sandbox.calls if call.api == "amocrm"]
        assert "/api/v4/leads" in paths
        assert not [path for path in paths if re.fullmatch(r"/api/v4/leads/\d+", path)]

        deal = amo.create_lead(ACCOUNT_ID, [ann["id"], bob["id"]], pipeline_id=PIPELINE)
        await s.deliver_webhooks()
        assert members(s, customers) == {"cy@example.com"}

        started = time.monotonic()
        amo.move_lead(ACCOUNT_ID, deal["id"], WON)
        await s.deliver_webhooks()
        assert time.monotonic() - started < 3
        assert members(s, customers) == {"cy@example.com", "ann@example.com", "bob@example.com"}

        amo.move_lead(ACCOUNT_ID, deal["id"], LOST)
        await s.deliver_webhooks()
        assert members(s, customers) == {"cy@example.com"}

        amo.move_lead(ACCOUNT_ID, deal["id"], WON)
        await s.deliver_webhooks()
        assert members(s, customers) == {"cy@example.com", "ann@example.com", "bob@example.com"}
        amo.delete_lead(ACCOUNT_ID, deal["id"])
        await s.deliver_webhooks()
        assert members(s, customers) == {"cy@example.com"}
        # The main list keeps everyone.
        assert members(s, await main_list(s)) == {
            "ann@example.com",
            "bob@example.com",
            "cy@example.com",
            "di@example.com",
        }
        async with s.services.sessions() as session:
            assert await rule_counts(session, ACCOUNT_ID) == {customers: 1}


async def test_a_deal_moved_while_its_webhook_was_lost_is_caught_by_reconciliation(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        await s.install()
        amo = s.sandbox.amocrm
        ann = amo.add_contact(ACCOUNT_ID, name="Ann", emails=["ann@example.com"])
        deal = amo.create_lead(ACCOUNT_ID, [ann["id"]], pipeline_id=PIPELINE)
        won = amo.create_lead(ACCOUNT_ID, [ann["id"]], pipeline_id=PIPELINE, status_id=WON)
        s.sandbox.unisender.add_key(UNISENDER_KEY)
        customers = s.sandbox.unisender.create_list(UNISENDER_KEY, "Customers")
        rule = {
            "list_id": customers,
            "lead_statuses": [{"pipeline_id": PIPELINE, "status_id": WON}],
        }
        await s.store_settings({"lists": [rule]})
        await s.connect_unisender()
        await s.settle()
        assert members(s, customers) == {"ann@example.com"}

        amo.webhooks_enabled = False
        amo.delete_lead(ACCOUNT_ID, won["id"])
        await s.reconcile_now()
        assert members(s, customers) == set()
        amo.move_lead(ACCOUNT_ID, deal["id"], WON)
        await s.reconcile_now()
        assert members(s, customers) == {"ann@example.com"}


async def test_generated_contacts_land_in_exactly_the_lists_their_tags_and_deals_choose(
    database_url: str,
) -> None:
    """Thousands of realistic contacts (shared addresses, odd fields, tags, deals): each
    segment list holds exactly the valid addresses of the contacts its rule matches."""
    async with stack(database_url) as s:
        await s.install()
        amo = s.sandbox.amocrm
        ids = amo.generate_contacts(
            ACCOUNT_ID, 3000, seed=7, lead_statuses=[(PIPELINE, WON, 1), (PIPELINE, LOST, 3)]
        )
        first, second = (str(tag["name"]) for tag in GENERATED_TAGS[:2])
        s.sandbox.unisender.add_key(UNISENDER_KEY)
        tagged = s.sandbox.unisender.create_list(UNISENDER_KEY, "Tagged")
        won = s.sandbox.unisender.create_list(UNISENDER_KEY, "Won")
        won_rule = {"pipeline_id": PIPELINE, "status_id": WON}
        await s.store_settings(
            {
                "lists": [
                    {"list_id": tagged, "tags_any": [first.upper(), second]},
                    {"list_id": won, "lead_statuses": [won_rule]},
                ]
            },
        )
        await s.connect_unisender()
        await s.settle(timeout=120)

        won_contacts = set()
        for lead_id in amo.leads_in(ACCOUNT_ID, [(PIPELINE, WON)]):
            lead = amo.get_lead(ACCOUNT_ID, lead_id)
            assert lead is not None
            won_contacts |= {c["id"] for c in lead["_embedded"]["contacts"]}
        want_tagged: set[str] = set()
        want_won: set[str] = set()
        for contact_id in ids:
            contact = amo.get_contact(ACCOUNT_ID, contact_id)
            assert contact is not None
            addresses = {a.lower() for a in contact_emails(contact["custom_fields_values"]).valid}
            names = {tag["name"].lower() for tag in contact["_embedded"]["tags"]}
            if names & {first.lower(), second.lower()}:
                want_tagged |= addresses
            if contact_id in won_contacts:
                want_won |= addresses
        assert want_tagged
        assert want_won
        assert members(s, tagged) == want_tagged
        assert members(s, won) == want_won


async def test_a_restored_contact_read_back_from_amocrm_returns_to_its_segment_list(
    database_url: str,
) -> None:
    """A restore webhook may carry no fields (SPEC §5): the contact, tags included, is
    read from the API, and its tag rule puts it back."""
    async with stack(database_url) as s:
        (vip,) = await installed_with_lists(s, "VIP")
        amo = s.sandbox.amocrm
        amo.restore_without_fields = 1.0
        ann = amo.add_contact(ACCOUNT_ID, name="Ann", emails=["ann@example.com"], tags=["vip"])
        await connected_with_vip_rule(s, vip)
        amo.delete_contact(ACCOUNT_ID, ann["id"])
        await s.deliver_webhooks()
        assert members(s, vip) == set()
        amo.restore_contact(ACCOUNT_ID, ann["id"])
        await s.deliver_webhooks()
        assert members(s, vip) == {"ann@example.com"}


async def test_lead_webhooks_are_coalesced_per_deal(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        amo = s.sandbox.amocrm
        ann = amo.add_contact(ACCOUNT_ID, name="Ann", emails=["ann@example.com"])
        s.sandbox.unisender.add_key(UNISENDER_KEY)
        customers = s.sandbox.unisender.create_list(UNISENDER_KEY, "Customers")
        rule = {
            "list_id": customers,
            "lead_statuses": [{"pipeline_id": PIPELINE, "status_id": WON}],
        }
        await s.store_settings({"lists": [rule]})
        await s.connect_unisender()
        await s.settle()
        deal = amo.create_lead(ACCOUNT_ID, [ann["id"]], pipeline_id=PIPELINE)
        await s.deliver_webhooks()
        # Three moves posted before the job runs: one deal to read, as it stands at the end.
        amo.webhooks_enabled = False
        url = amo.webhooks(ACCOUNT_ID)[0]["destination"]
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": ""}
        for status in (WON, LOST, WON):
            amo.move_lead(ACCOUNT_ID, deal["id"], status)
            body = amo.lead_webhook_body(ACCOUNT_ID, "status", deal["id"])
            answer = await s.http.post(url, content=body, headers=headers)
            assert answer.status_code == 200, answer.text
        async with s.services.sessions() as session:
            pending = (await session.execute(select(PendingLead))).scalars().all()
        assert [(p.lead_id, p.version > 1) for p in pending] == [(deal["id"], True)]
        s.sandbox.calls.clear()
        await s.settle()
        reads = [c.path for c in s.sandbox.calls if re.fullmatch(r"/api/v4/leads/\d+", c.path)]
        assert reads == [f"/api/v4/leads/{deal['id']}"]
        assert members(s, customers) == {"ann@example.com"}
        assert await s.count(PendingLead) == 0
