"""Unisender's import log end to end: it holds warnings as well as errors, and only rows it
refused become unsynced (the sandbox answers as the documentation describes)."""

from __future__ import annotations

from tests.stack import ACCOUNT_ID, stack


async def test_a_warned_address_is_synced_and_a_refused_one_is_not(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        uni, amo = s.sandbox.unisender, s.sandbox.amocrm
        uni.warn("info@example.com", "role_address", "info@example.com looks like a role address")
        uni.reject("trap@example.com", "spam_trap", "trap@example.com is a known spam trap")
        role = amo.add_contact(ACCOUNT_ID, name="Role", emails=["info@example.com"])
        trap = amo.add_contact(ACCOUNT_ID, name="Trap", emails=["trap@example.com"])
        both = amo.add_contact(
            ACCOUNT_ID, name="Both", emails=["trap@example.com", "both@example.com"]
        )
        await s.connect_unisender()
        await s.settle()

        assert s.members() == {"info@example.com", "both@example.com"}
        synced, unsynced = await s.view("sync"), await s.view("unsync")
        assert set(synced) == {role["id"], both["id"]}
        assert unsynced[trap["id"]]["reason"] == "unisender:spam_trap"
        assert unsynced[trap["id"]]["detail"] == "trap@example.com is a known spam trap"

        # The same through a webhook: the warned address of a new contact is listed.
        amo.update_contact(ACCOUNT_ID, trap["id"], emails=["info@example.com"])
        await s.deliver_webhooks()
        assert trap["id"] in await s.view("sync")
