"""Webhooks end to end: amoCRM (the sandbox) posts real-format webhooks to the service."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from amosync.db.models import PendingChange, WebhookEvent
from tests.stack import ACCOUNT_ID, stack


async def test_add_update_delete_and_restore_reach_unisender(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.connect()
        amo = s.sandbox.amocrm
        ann = amo.add_contact(ACCOUNT_ID, name="Ann", emails=["ann@example.com"])
        await s.deliver_webhooks()
        assert s.members() == {"ann@example.com"}

        amo.update_contact(ACCOUNT_ID, ann["id"], emails=["ann.new@example.com"])
        await s.deliver_webhooks()
        assert s.members() == {"ann.new@example.com"}

        amo.delete_contact(ACCOUNT_ID, ann["id"])
        await s.deliver_webhooks()
        assert s.members() == set()
        synced = (await s.http.get("/accounts/sync", params={"account_id": ACCOUNT_ID})).json()
        assert synced["items"] == []

        amo.restore_contact(ACCOUNT_ID, ann["id"])
        await s.deliver_webhooks()
        assert s.members() == {"ann.new@example.com"}
        async with s.services.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(PendingChange)) == 0
            assert await session.scalar(select(func.count()).select_from(WebhookEvent)) == 4


async def test_duplicate_and_late_deliveries_are_harmless(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.connect()
        amo = s.sandbox.amocrm
        amo.webhooks_enabled = False
        bob = amo.add_contact(ACCOUNT_ID, name="Bob", emails=["bob@example.com"])
        old = amo.webhook_body(ACCOUNT_ID, "add", bob["id"])
        await asyncio.sleep(1.1)  # amoCRM's modification times are whole seconds
        amo.update_contact(ACCOUNT_ID, bob["id"], emails=["bob2@example.com"])
        new = amo.webhook_body(ACCOUNT_ID, "update", bob["id"])
        url = s.sandbox.amocrm.webhooks(ACCOUNT_ID)[0]["destination"]
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": ""}
        for body in (new, new, old):  # twice, then an older state arriving late
            response = await s.http.post(url, content=body, headers=headers)
            assert response.status_code == 200, response.text
        await s.settle()
        assert s.members() == {"bob2@example.com"}


async def test_unknown_token_is_refused_and_nothing_is_stored(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.connect()
        body = b"contacts[add][0][id]=1&contacts[add][0][name]=X"
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": ""}
        for url in ("/webhook?token=wrong", "/webhook"):
            response = await s.http.post(url, content=body, headers=headers)
            assert response.status_code == 401
            assert response.json()["error"] == "invalid_webhook_token"
        async with s.services.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(PendingChange)) == 0


async def test_unreadable_payloads_get_4xx_and_store_nothing(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.connect()
        url = s.sandbox.amocrm.webhooks(ACCOUNT_ID)[0]["destination"]
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": ""}
        for body in (
            b"\xff\xfe%%%",
            b"contacts[add][0][id]=1&contacts[add][0][name]=a%00b",
            b"contacts[add][0][id]=1&" + b"x" + b"[y]" * 16 + b"=1",
        ):
            response = await s.http.post(url, content=body, headers=headers)
            assert 400 <= response.status_code < 500, body
            assert response.json()["error"] == "malformed_webhook"
        async with s.services.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(PendingChange)) == 0


async def test_a_body_that_parses_is_stored_even_with_useless_parts(database_url: str) -> None:
    """SPEC §5: only an unreadable body is refused; parts of no use are skipped."""
    async with stack(database_url) as s:
        await s.connect()
        url = s.sandbox.amocrm.webhooks(ACCOUNT_ID)[0]["destination"]
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": ""}
        body = (
            b"contacts[add][0][id]=abc&contacts[add][1]=x&contacts[add][2][name]=no-id"
            b"&contacts[add][3][id]=77&contacts[add][3][name]=Kept&contacts[add][3]"
            b"[custom_fields][0][code]=EMAIL&contacts[add][3][custom_fields][0][values][0]"
            b"[value]=kept@example.com&contacts[add][3][linked_leads_id][99999999999][ID]=1"
        )
        response = await s.http.post(url, content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 1
        await s.settle()
        assert s.members() == {"kept@example.com"}


async def test_other_entities_are_acknowledged_and_ignored(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.connect()
        url = s.sandbox.amocrm.webhooks(ACCOUNT_ID)[0]["destination"]
        body = b"leads[add][0][id]=5&leads[add][0][name]=Deal&account[id]=30896271"
        response = await s.http.post(
            url,
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Authorization": ""},
        )
        assert response.status_code == 200
        assert response.json()["accepted"] == 0
