"""Full sync end to end against the sandbox over real HTTP."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from amosync.db.models import Integration, SyncRun
from amosync.sync.fullsync import FullSync
from tests.stack import ACCOUNT_ID, UNISENDER_KEY, Stack, stack


async def run_to_end(s: Stack) -> dict[str, object]:
    started = await s.http.post("/sync", json={"account_id": ACCOUNT_ID})
    assert started.status_code == 202
    await s.settle()
    run = await s.http.get(f"/sync/{started.json()['run_id']}")
    return dict(run.json())


async def test_mixed_contacts_end_with_exact_membership_and_reasons(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        amo = s.sandbox.amocrm
        ann = amo.add_contact(
            ACCOUNT_ID, name="Ann", emails=["ann@example.com", " Ann2@Example.com "]
        )
        dup = amo.add_contact(
            ACCOUNT_ID, name="Ann again", emails=["ANN@example.com", "ann@example.com"]
        )
        none = amo.add_contact(ACCOUNT_ID, name="Nobody", emails=[])
        phone = amo.add_contact(ACCOUNT_ID, name="Phone only", emails=[], phones=["+79990000000"])
        bad = amo.add_contact(ACCOUNT_ID, name="Bad", emails=["not-an-address", "x@"])
        null = amo.add_contact(ACCOUNT_ID, name="Null fields", custom_fields_values=None)
        half = amo.add_contact(ACCOUNT_ID, name="Half", emails=["oops", "half@example.com"])
        await s.connect_unisender()
        await s.settle()

        assert s.members() == {"ann@example.com", "ann2@example.com", "half@example.com"}
        synced = await s.view("sync", limit=2)
        unsynced = await s.view("unsync", limit=2)
        assert set(synced) == {ann["id"], dup["id"], half["id"]}
        assert {k: v["reason"] for k, v in unsynced.items()} == {
            none["id"]: "no_email",
            phone["id"]: "no_email",
            bad["id"]: "invalid_email",
            null["id"]: "no_email",
        }
        assert synced[ann["id"]]["emails"] == ["ann@example.com", "Ann2@Example.com"]
        assert synced[ann["id"]]["synced_at"]

        runs = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()
        assert runs["last_sync"]["status"] == "done"
        assert runs["last_sync"]["fetched"] == 7
        assert runs["last_sync"]["synced"] == 3
        assert runs["last_sync"]["unsynced"] == 4
        assert runs["contacts"] == {"synced": 3, "unsynced": 4, "pending": 0, "total": 7}


async def test_unisender_rejections_become_unsynced_with_the_code(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        s.sandbox.unisender.reject("blocked@example.com", "email_blocked")
        blocked = s.sandbox.amocrm.add_contact(ACCOUNT_ID, name="B", emails=["blocked@example.com"])
        await s.connect_unisender()
        await s.settle()
        unsynced = await s.view("unsync", limit=2)
        assert unsynced[blocked["id"]]["reason"] == "unisender:email_blocked"
        assert "blocked@example.com" not in s.members()


async def test_a_lost_address_is_excluded_on_the_next_sync_unless_shared(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        await s.install()
        amo = s.sandbox.amocrm
        one = amo.add_contact(
            ACCOUNT_ID, name="One", emails=["a@example.com", "shared@example.com"]
        )
        amo.add_contact(ACCOUNT_ID, name="Two", emails=["shared@example.com"])
        gone = amo.add_contact(ACCOUNT_ID, name="Gone", emails=["gone@example.com"])
        await s.connect_unisender()
        await s.settle()
        assert s.members() == {"a@example.com", "shared@example.com", "gone@example.com"}

        amo.webhooks_enabled = False
        amo.update_contact(ACCOUNT_ID, one["id"], emails=["b@example.com"])
        amo.delete_contact(ACCOUNT_ID, gone["id"])
        run = await run_to_end(s)
        assert run["status"] == "done"
        assert s.members() == {"b@example.com", "shared@example.com"}
        # Excluded, not deleted or unsubscribed.
        contact = s.sandbox.unisender.contact(UNISENDER_KEY, "a@example.com")
        assert contact is not None
        assert contact["status"] != "unsubscribed"
        assert gone["id"] not in (await s.view("sync", limit=2))


async def test_an_unsubscribed_address_stays_unsubscribed(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        s.sandbox.amocrm.add_contact(ACCOUNT_ID, name="U", emails=["u@example.com"])
        await s.connect_unisender()
        await s.settle()
        s.sandbox.unisender.unsubscribe(UNISENDER_KEY, "u@example.com")
        run = await run_to_end(s)
        assert run["status"] == "done"
        assert (
            s.sandbox.unisender.contact(UNISENDER_KEY, "u@example.com")["status"] == "unsubscribed"
        )


async def test_tokens_expiring_mid_sync_are_refreshed_without_losing_a_page(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        s.sandbox.amocrm.access_token_ttl = 1
        await s.install()
        s.sandbox.amocrm.generate_contacts(ACCOUNT_ID, 1500, seed=7)
        s.sandbox.amocrm.latency = 0.2  # six pages at 0.2 s outlive the 1 s tokens
        await s.connect_unisender()
        await s.settle(timeout=60)
        run = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()["last_sync"]
        assert run["status"] == "done"
        assert run["fetched"] == 1500
        async with s.services.sessions() as session:
            integration = (await session.execute(select(Integration))).scalar_one()
        assert integration.token_version >= 2  # refreshed at least once
        assert s.sandbox.amocrm.contact_pages_served(ACCOUNT_ID) >= 6


async def test_a_run_killed_midway_resumes_from_its_checkpoint(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        s.sandbox.amocrm.generate_contacts(ACCOUNT_ID, 2500, seed=3)  # 10 pages
        await s.connect_unisender()
        async with s.services.sessions() as session:
            run_id = (await session.execute(select(SyncRun.id))).scalar_one()
        # Slow pages, so the run is surely midway when the poll below sees its checkpoint
        # (with fast ones a busy machine let it finish first, once).
        s.sandbox.amocrm.latency = 0.2
        task = asyncio.create_task(FullSync(s.services, run_id).run())
        while True:
            await asyncio.sleep(0.05)
            async with s.services.sessions() as session:
                run = await session.get(SyncRun, run_id)
            assert run is not None
            if run.next_page >= 3:
                break
        assert not task.done(), "the run ended before it could be killed midway"
        task.cancel()  # the process dies: nothing after this point runs
        with pytest.raises(asyncio.CancelledError):
            await task
        checkpoint = run.next_page
        pages_before = s.sandbox.amocrm.contact_pages_served(ACCOUNT_ID)
        s.sandbox.amocrm.latency = 0
        # The queued job now runs the same run: it must resume, not start over.
        await s.settle()
        async with s.services.sessions() as session:
            run = await session.get(SyncRun, run_id)
        assert run is not None
        assert run.status == "done"
        assert run.fetched == 2500
        # Contacts stored before the kill and refetched with the checkpoint's page are
        # counted once.
        assert run.synced + run.unsynced == 2500
        first_page_after = s.sandbox.amocrm.contact_pages(ACCOUNT_ID)[pages_before]
        assert first_page_after >= checkpoint > 1
        assert len(s.members()) > 0
