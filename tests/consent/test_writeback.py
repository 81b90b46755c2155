"""Consent back in amoCRM end to end, over real HTTP: the sandbox's Unisender posts an
unsubscribe to the service's hook, the worker tags and notes the amoCRM contacts holding the
address (SPEC §9)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from sqlalchemy import select

from amosync.db.models import ConsentEvent, Job
from amosync.worker.runner import Worker
from tests.consent.conftest import ANN, deliver, notes, setup
from tests.stack import ACCOUNT_ID, UNISENDER_KEY, Stack, stack
from tests.web.conftest import log_in


async def test_an_unsubscribe_tags_and_notes_every_contact_holding_the_address(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        ids = await setup(s)
        amo = s.sandbox.amocrm
        started = time.monotonic()
        s.sandbox.unisender.unsubscribe(UNISENDER_KEY, ANN)
        await deliver(s)
        assert time.monotonic() - started < 5
        assert amo.tags(ACCOUNT_ID, ids["ann"]) == ["vip", "unsubscribed"]  # vip kept
        assert amo.tags(ACCOUNT_ID, ids["ann_work"]) == ["unsubscribed"]
        assert amo.tags(ACCOUNT_ID, ids["bob"]) == []
        for key in ("ann", "ann_work"):
            (text,) = notes(s, ids[key])
            list_id = s.sandbox.unisender.lists(UNISENDER_KEY)[0]["id"]
            assert ANN in text
            assert f"список {list_id}" in text  # an amocrm.ru account: in Russian
            assert "UTC" in text
        assert notes(s, ids["bob"]) == []
        # The address stays unsubscribed, and the synced view says so.
        assert s.sandbox.unisender.contact(UNISENDER_KEY, ANN)["status"] == "unsubscribed"  # type: ignore[index]
        synced = (await s.http.get("/accounts/sync", params={"account_id": ACCOUNT_ID})).json()
        by_id = {row["amocrm_id"]: row for row in synced["items"]}
        assert by_id[ids["ann_work"]]["unsubscribed"] == ["Ann@Example.com"]
        assert by_id[ids["bob"]]["unsubscribed"] == []


async def test_the_same_event_delivered_twice_writes_once(database_url: str) -> None:
    async with stack(database_url) as s:
        ids = await setup(s)
        hooks = s.sandbox.unisender.hooks
        s.sandbox.unisender.unsubscribe(UNISENDER_KEY, ANN)
        await deliver(s)
        (delivery,) = hooks.deliveries
        # Unisender sends it again (a retry whose 200 it did not see), retry_count and all.
        delivery.attempts += 1
        again = await s.http.post(
            delivery.hook_url,
            content=hooks.body(delivery),
            headers={"Content-Type": "application/json"},
        )
        assert again.status_code == 200, again.text
        await s.settle()
        assert s.sandbox.amocrm.tags(ACCOUNT_ID, ids["ann"]) == ["vip", "unsubscribed"]
        assert len(notes(s, ids["ann"])) == 1
        assert len(notes(s, ids["ann_work"])) == 1
        assert await s.count(ConsentEvent) == 1


async def test_a_wrong_token_gets_401_and_nothing_is_written(database_url: str) -> None:
    async with stack(database_url) as s:
        await setup(s)
        body = b'{"email": "ann@example.com", "event_name": "unsubscribe"}'
        for params in ({"token": "wrong"}, {}):
            answer = await s.http.post("/unisender/webhook", params=params, content=body)
            assert answer.status_code == 401
            assert answer.json()["error"] == "invalid_hook_token"
        url = s.sandbox.unisender.hooks.list_hooks(UNISENDER_KEY)[0]["hook_url"]
        bad = await s.http.post(url, content=b"{not json")
        assert bad.status_code == 400
        assert bad.json()["error"] == "invalid_json"
        other = await s.http.post(url, json={"event_name": "subscribe", "email": ANN})
        assert other.json() == {"accepted": 0, "ignored": 1}
        await s.settle()
        assert await s.count(ConsentEvent) == 0
        assert s.sandbox.amocrm.notes(ACCOUNT_ID) == []


async def test_a_delivery_while_the_service_is_down_is_applied_after_the_restart(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        ids = await setup(s)
        uni = s.sandbox.unisender
        uni.hook_retry_interval = 0.5  # Unisender's 10 minutes, scaled down
        await s.stop_service()
        uni.unsubscribe(UNISENDER_KEY, ANN)
        await uni.hooks.flush()
        (delivery,) = uni.hooks.deliveries
        assert not delivery.done
        assert delivery.statuses == ["ConnectError"]
        await s.start_service()
        for _ in range(100):
            if delivery.done:
                break
            await asyncio.sleep(0.05)
        assert delivery.done
        await s.settle()
        assert s.sandbox.amocrm.tags(ACCOUNT_ID, ids["ann"]) == ["vip", "unsubscribed"]
        assert len(notes(s, ids["ann_work"])) == 1


async def reconcile_now(s: Stack) -> None:
    """Make the periodic pass due now and run it."""
    await s.make_due("reconcile")
    await Worker(s.services, concurrency=1).drain(budget=20)


async def problem_codes(s: Stack) -> list[str]:
    body: dict[str, Any] = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()
    return [p["code"] for p in body["problems"]]


async def test_a_stopped_hook_is_set_active_by_the_pass_and_shown_meanwhile(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        ids = await setup(s)
        uni = s.sandbox.unisender
        assert uni.hooks.stop(UNISENDER_KEY) == 1
        await reconcile_now(s)
        assert [h["status"] for h in uni.hooks.list_hooks(UNISENDER_KEY)] == ["active"]
        assert "unisender_hook_stopped" in await problem_codes(s)
        # Active again: unsubscribes arrive.
        uni.unsubscribe(UNISENDER_KEY, ANN)
        await deliver(s)
        assert s.sandbox.amocrm.tags(ACCOUNT_ID, ids["ann"]) == ["vip", "unsubscribed"]
        # A later pass finds it active: the problem is gone.
        await reconcile_now(s)
        assert "unisender_hook_stopped" not in await problem_codes(s)


async def test_a_later_full_sync_leaves_the_address_unsubscribed(database_url: str) -> None:
    async with stack(database_url) as s:
        await setup(s)
        s.sandbox.unisender.unsubscribe(UNISENDER_KEY, ANN)
        await deliver(s)
        started = await s.http.post("/sync", json={"account_id": ACCOUNT_ID})
        assert started.status_code == 202
        await s.settle()
        run = (await s.http.get(f"/sync/{started.json()['run_id']}")).json()
        assert run["status"] == "done"
        contact = s.sandbox.unisender.contact(UNISENDER_KEY, ANN)
        assert contact is not None
        assert contact["status"] == "unsubscribed"
        assert {m["status"] for m in contact["lists"]} == {"unsubscribed"}


async def test_consent_disabled_writes_nothing(database_url: str) -> None:
    async with stack(database_url) as s:
        ids = await setup(s)
        answer = await s.http.put(
            f"/accounts/{ACCOUNT_ID}/settings", json={"consent": {"enabled": False}}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["consent"] == {"enabled": False, "tag": "unsubscribed", "note": True}
        assert answer.json()["sync"] is None  # consent is not what goes to Unisender
        calls_before = len(s.sandbox.calls.matching(api="amocrm", path="/api/v4/contacts/notes"))
        s.sandbox.unisender.unsubscribe(UNISENDER_KEY, ANN)
        await deliver(s)
        assert s.sandbox.amocrm.tags(ACCOUNT_ID, ids["ann"]) == ["vip"]
        assert notes(s, ids["ann"]) == []
        assert (
            len(s.sandbox.calls.matching(api="amocrm", path="/api/v4/contacts/notes"))
            == calls_before
        )
        assert await s.count(ConsentEvent, ConsentEvent.status == "disabled") == 1


async def test_settings_route_validates_and_keeps_what_it_does_not_own(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        url = f"/accounts/{ACCOUNT_ID}/settings"
        assert (await s.http.get(url)).json()["consent"] == {
            "enabled": True,
            "tag": "unsubscribed",
            "note": True,
        }
        for bad in (
            {"consent": {"enabled": "yes"}},
            {"consent": {"tag": "  "}},
            {"consent": {"colour": "red"}},
            {"colour": "red"},
        ):
            answer = await s.http.put(url, json=bad)
            assert answer.status_code == 422, bad
        ok = await s.http.put(url, json={"consent": {"tag": " opted-out ", "note": False}})
        assert ok.json()["consent"] == {"enabled": True, "tag": "opted-out", "note": False}
        assert (await s.http.get(url)).json()["consent"]["tag"] == "opted-out"
        widget = await s.http.get(url, headers={"Authorization": "", **s.widget_headers()})
        assert widget.status_code == 200
        other = await s.http.get(
            f"/accounts/{ACCOUNT_ID + 1}/settings",
            headers={"Authorization": "", **s.widget_headers()},
        )
        assert other.status_code == 403


async def test_an_english_account_gets_an_english_note_and_the_tag_it_chose(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        amo = s.sandbox.amocrm
        amo.add_account(account_id=ACCOUNT_ID, subdomain="acme", name="Acme")
        assert s.settings.amocrm_client_id
        code = amo.issue_code(ACCOUNT_ID, s.settings.amocrm_client_id)
        await s.http.get(
            "/vidget",
            params={
                "code": code,
                "referer": "acme.kommo.com",
                "client_id": s.settings.amocrm_client_id,
            },
        )
        await s.settle()
        ann = amo.add_contact(ACCOUNT_ID, "Ann", emails=[ANN])["id"]
        await s.connect_unisender()
        await s.settle()
        await s.http.put(f"/accounts/{ACCOUNT_ID}/settings", json={"consent": {"tag": "no-mail"}})
        s.sandbox.unisender.unsubscribe(UNISENDER_KEY, ANN)
        await deliver(s)
        assert amo.tags(ACCOUNT_ID, ann) == ["no-mail"]
        (text,) = notes(s, ann)
        assert text.startswith(f"{ANN} unsubscribed in Unisender (list ")


async def test_disconnect_removes_the_hook(database_url: str) -> None:
    async with stack(database_url) as s:
        await setup(s)
        answer = await s.http.post(
            "/rpc",
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "account.disconnect",
                "params": {"account_id": ACCOUNT_ID},
            },
        )
        assert answer.json()["result"]["disconnected"] is True
        assert s.sandbox.unisender.hooks.list_hooks(UNISENDER_KEY) == []


async def test_an_address_no_contact_holds_is_recorded_and_skipped(database_url: str) -> None:
    async with stack(database_url) as s:
        await setup(s)
        url = s.sandbox.unisender.hooks.list_hooks(UNISENDER_KEY)[0]["hook_url"]
        answer = await s.http.post(
            url, json=[{"email": "nobody@example.com", "event_name": "unsubscribe", "list_id": 1}]
        )
        assert answer.json() == {"accepted": 1, "ignored": 0}
        await s.settle()
        assert await s.count(ConsentEvent, ConsentEvent.status == "no_contact") == 1
        assert s.sandbox.amocrm.notes(ACCOUNT_ID) == []


async def test_the_dashboard_lists_the_accounts_recent_unsubscribes(database_url: str) -> None:
    async with stack(database_url) as s:
        await setup(s)
        s.sandbox.unisender.unsubscribe(UNISENDER_KEY, ANN)
        await deliver(s)
        async with httpx.AsyncClient(base_url=s.url) as web:
            assert (await log_in(web)).status_code in (200, 303)
            page = await web.get(f"/ui/accounts/{ACCOUNT_ID}", headers={"Accept-Language": "en"})
        assert page.status_code == 200
        table = page.text.split('data-table="consent-events"', 1)[1].split("</table>", 1)[0]
        assert ANN in table
        assert "Tagged: 2 contacts" in table


async def test_put_accounts_refuses_bad_consent_settings(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        bad = await s.http.put(
            f"/accounts/{ACCOUNT_ID}", json={"settings": {"consent": {"note": "sometimes"}}}
        )
        assert bad.status_code == 422
        assert bad.json()["error"] == "invalid_settings"
        ok = await s.http.put(
            f"/accounts/{ACCOUNT_ID}", json={"settings": {"consent": {"note": False}}}
        )
        assert ok.status_code == 200
        settings = (await s.http.get(f"/accounts/{ACCOUNT_ID}/settings")).json()
        assert settings["consent"]["note"] is False


async def test_a_burst_of_unsubscribes_is_written_in_a_few_calls(database_url: str) -> None:
    async with stack(database_url) as s:
        amo = s.sandbox.amocrm
        await s.install()
        emails = [f"person{n}@example.com" for n in range(30)]
        ids = [amo.add_contact(ACCOUNT_ID, f"P{n}", emails=[e])["id"] for n, e in enumerate(emails)]
        await s.connect_unisender()
        await s.settle()
        for email in emails:
            s.sandbox.unisender.unsubscribe(UNISENDER_KEY, email)
        await deliver(s)
        assert set(amo.tagged(ACCOUNT_ID, "unsubscribed")) == set(ids)
        assert all(len(notes(s, i)) == 1 for i in ids)
        patches = s.sandbox.calls.matching(api="amocrm", path="/api/v4/contacts")
        edits = [c for c in patches if c.method == "PATCH"]
        assert 1 <= len(edits) <= 10  # batched, not one call per unsubscribe


async def test_a_refused_hook_call_does_not_fail_the_reconciliation_pass(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        await setup(s)
        # Unisender refuses listHooks for good (say, a key without API rights to hooks).
        s.sandbox.unisender.add_fault(method="listHooks", code="access_restricted", times=None)
        await reconcile_now(s)
        async with s.services.sessions() as session:
            failed = await session.scalar(
                select(Job.id).where(Job.kind == "reconcile", Job.status == "failed")
            )
        assert failed is None
        assert "request_refused" not in await problem_codes(s)
