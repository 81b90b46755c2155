"""No poison contact: one contact can neither fail its batches nor stall its account.

End to end against the sandbox over real HTTP: a contact with more addresses than one
`importContacts` takes is split across calls (full sync and webhooks); a change that keeps
failing is set aside with its reason while the account's other changes go on; `pending`
counts the changes still waiting.
"""

from __future__ import annotations

import httpx
import stamina
from sqlalchemy import func, select

from amosync.db.models import ListedEmail, PendingChange
from amosync.worker.runner import Worker
from tests.conftest import ADMIN_TOKEN
from tests.stack import ACCOUNT_ID, Stack, stack

BIG = 1000


def addresses(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i:04d}@example.com" for i in range(count)]


async def listed(s: Stack, amocrm_id: int) -> int:
    async with s.services.sessions() as session:
        query = select(func.count()).where(
            ListedEmail.account_id == ACCOUNT_ID, ListedEmail.amocrm_id == amocrm_id
        )
        return int(await session.scalar(query) or 0)


async def pending(s: Stack) -> int:
    account = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()
    return int(account["contacts"]["pending"])


def imports(s: Stack) -> int:
    """importContacts calls the sandbox answered (each holds at most 500 rows, or it
    refuses the call with `invalid_arg`)."""
    return s.sandbox.calls.count_where(api="unisender", path="/ru/api/importContacts")


async def test_full_sync_splits_a_contact_over_500_addresses(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        amo = s.sandbox.amocrm
        before = amo.add_contact(ACCOUNT_ID, name="Before", emails=["before@example.com"])
        big = amo.add_contact(ACCOUNT_ID, name="Big", emails=addresses("big", BIG))
        after = amo.add_contact(ACCOUNT_ID, name="After", emails=["after@example.com"])
        await s.connect_unisender()
        await s.settle()

        run = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()["last_sync"]
        assert run["status"] == "done", run
        assert s.members() == {"before@example.com", "after@example.com", *addresses("big", BIG)}
        assert imports(s) >= 3  # 1,000 addresses take two calls at least, then the rest
        synced = await s.view("sync")
        assert set(synced) == {before["id"], big["id"], after["id"]}
        assert len(synced[big["id"]]["emails"]) == BIG  # type: ignore[arg-type]
        assert await listed(s, big["id"]) == BIG

        # A second run records the same rows: nothing is excluded, nothing listed twice.
        started = await s.http.post("/sync", json={"account_id": ACCOUNT_ID})
        await s.settle()
        run = (await s.http.get(f"/sync/{started.json()['run_id']}")).json()
        assert run["status"] == "done", run
        assert await listed(s, big["id"]) == BIG
        assert len(s.members()) == BIG + 2


async def test_webhook_contact_over_500_addresses_syncs_and_blocks_nothing(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        await s.connect()
        amo = s.sandbox.amocrm
        calls = imports(s)
        big = amo.add_contact(ACCOUNT_ID, name="Big", emails=addresses("hook", BIG))
        await s.deliver_webhooks()
        assert imports(s) - calls >= 2
        assert s.members() == set(addresses("hook", BIG))
        assert await listed(s, big["id"]) == BIG

        # A later webhook of the same account goes through, and so does a change of the
        # big contact that drops half its addresses.
        later = amo.add_contact(ACCOUNT_ID, name="Later", emails=["later@example.com"])
        amo.update_contact(ACCOUNT_ID, big["id"], emails=addresses("hook", BIG // 2))
        await s.deliver_webhooks()
        assert s.members() == {"later@example.com", *addresses("hook", BIG // 2)}
        assert await listed(s, big["id"]) == BIG // 2
        assert later["id"] in await s.view("sync")
        assert await pending(s) == 0


async def test_a_change_refused_for_good_is_set_aside_and_the_rest_goes_on(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        await s.connect()
        uni, amo = s.sandbox.unisender, s.sandbox.amocrm
        # Unisender refuses the whole call for one row: its documented "frequent error
        # without a type" (an address and a phone owned by different subscribers).
        uni.fail_imports(
            "owned@example.com",
            code="unspecified",
            message="Contacts owned@example.com and +77777777 already exist but owned by "
            "different subscribers",
        )
        amo.webhooks_enabled = False
        ann = amo.add_contact(ACCOUNT_ID, name="Ann", emails=["ann@example.com"])
        bad = amo.add_contact(ACCOUNT_ID, name="Owned", emails=["owned@example.com"])
        bob = amo.add_contact(ACCOUNT_ID, name="Bob", emails=["bob@example.com"])
        amo.webhooks_enabled = True
        for contact, action in ((ann, "add"), (bad, "add"), (bob, "add")):
            await s.http.post(
                amo.webhooks(ACCOUNT_ID)[0]["destination"],
                content=amo.webhook_body(ACCOUNT_ID, action, contact["id"]),
                headers={"Content-Type": "application/x-www-form-urlencoded", "Authorization": ""},
            )
        assert await pending(s) == 3
        await s.settle()

        assert s.members() == {"ann@example.com", "bob@example.com"}
        unsynced = await s.view("unsync")
        assert set(unsynced) == {bad["id"]}
        assert unsynced[bad["id"]]["reason"] == "unisender:unspecified"
        assert "different subscribers" in str(unsynced[bad["id"]]["detail"])
        assert await pending(s) == 0
        # The dashboard shows it too, with Unisender's message.
        async with httpx.AsyncClient(base_url=s.url) as browser:
            login = await browser.post("/login", data={"token": ADMIN_TOKEN})
            assert login.status_code < 400, login.text
            page = await browser.get(f"/ui/accounts/{ACCOUNT_ID}", params={"contacts": "unsynced"})
        assert page.status_code == 200
        assert "Rejected by Unisender (unspecified)" in page.text
        assert "owned by different subscribers" in page.text

        # The account goes on: a later change of another contact is applied at once.
        carl = amo.add_contact(ACCOUNT_ID, name="Carl", emails=["carl@example.com"])
        await s.deliver_webhooks()
        assert "carl@example.com" in s.members()
        assert carl["id"] in await s.view("sync")


async def test_a_change_that_keeps_failing_is_set_aside_after_a_few_attempts(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        await s.connect()
        uni, amo = s.sandbox.unisender, s.sandbox.amocrm
        # Every call holding this address gets an HTTP 500: transient by its look, so it is
        # retried, but it never passes.
        uni.fail_imports("crash@example.com", status=500)
        amo.webhooks_enabled = False
        crash = amo.add_contact(ACCOUNT_ID, name="Crash", emails=["crash@example.com"])
        ann = amo.add_contact(ACCOUNT_ID, name="Ann", emails=["ann@example.com"])
        url = amo.webhooks(ACCOUNT_ID)[0]["destination"]
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": ""}
        for contact in (crash, ann):
            body = amo.webhook_body(ACCOUNT_ID, "add", contact["id"])
            assert (await s.http.post(url, content=body, headers=headers)).status_code == 200

        worker = Worker(s.services, concurrency=1, retry_delay=lambda _attempt: 0.0)
        with stamina.set_testing(True, attempts=2):  # the client's own retries, unwaited
            for _ in range(12):
                await worker.drain(budget=5)
                if await s.count(PendingChange) == 0:
                    break
                assert await pending(s) == await s.count(PendingChange)
        assert await s.count(PendingChange) == 0
        assert s.members() == {"ann@example.com"}
        unsynced = await s.view("unsync")
        assert set(unsynced) == {crash["id"]}
        assert unsynced[crash["id"]]["reason"] == "sync_failed"
        assert "HTTP 500" in str(unsynced[crash["id"]]["detail"])
        assert ann["id"] in await s.view("sync")
        assert await pending(s) == 0

        # Set aside, not forgotten: the next state of the contact is tried afresh.
        uni.clear_import_failures()
        amo.webhooks_enabled = True
        amo.update_contact(ACCOUNT_ID, crash["id"], emails=["crash@example.com"])
        await s.deliver_webhooks()
        assert "crash@example.com" in s.members()
        assert crash["id"] in await s.view("sync")


async def test_pending_counts_the_changes_still_waiting(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.connect()
        amo = s.sandbox.amocrm
        for name in ("A", "B", "C"):
            amo.add_contact(ACCOUNT_ID, name=name, emails=[f"{name.lower()}@example.com"])
        await amo.flush_webhooks()  # stored, not applied: nobody has run the queue yet
        assert await pending(s) == 3
        assert await pending(s) == await s.count(PendingChange)
        await s.settle()
        assert await pending(s) == 0


async def test_a_refusal_of_every_call_sets_nothing_aside(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.connect()
        uni, amo = s.sandbox.unisender, s.sandbox.amocrm
        # Not one contact's doing: every importContacts is refused.
        uni.add_fault(method="importContacts", code="unspecified", times=None)
        amo.webhooks_enabled = False
        added = [
            amo.add_contact(ACCOUNT_ID, name=f"C{i}", emails=[f"c{i}@example.com"])
            for i in range(60)
        ]
        url = amo.webhooks(ACCOUNT_ID)[0]["destination"]
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": ""}
        for contact in added:
            body = amo.webhook_body(ACCOUNT_ID, "add", contact["id"])
            assert (await s.http.post(url, content=body, headers=headers)).status_code == 200
        calls = imports(s)
        await Worker(s.services, retry_delay=lambda _attempt: 0.0).drain(10)
        assert imports(s) - calls <= 1 + 40  # the first call, then the halving gives up
        assert await pending(s) == 60  # kept, none set aside
        assert await s.view("unsync") == {}
