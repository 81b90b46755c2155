"""Replacing the account's Unisender key moves the consent hook (SPEC §9): the old key's
hook is removed with the old key, the new key gets one, and a removal Unisender refuses
never holds up the new key. Over real HTTP against the sandbox."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from amosync.db.models import Job
from tests.stack import ACCOUNT_ID, UNISENDER_KEY, Stack, stack
from tests.web.conftest import csrf, log_in

NEW_KEY = "sandbox-unisender-key-0002"


async def connected(s: Stack) -> str:
    """An installed account with the first key connected; returns its hook's URL."""
    await s.connect()
    (hook,) = s.sandbox.unisender.hooks.list_hooks(UNISENDER_KEY)
    assert hook["status"] == "active"
    return str(hook["hook_url"])


async def replace_key(s: Stack, route: str) -> None:
    s.sandbox.unisender.add_key(NEW_KEY)
    if route == "admin":
        answer = await s.http.put(f"/accounts/{ACCOUNT_ID}", json={"unisender_key": NEW_KEY})
        assert answer.status_code == 200, answer.text
    elif route == "widget":
        await s.connect_unisender(key=NEW_KEY)
    else:
        async with httpx.AsyncClient(base_url=s.url) as web:
            assert (await log_in(web)).status_code == 303
            token = await csrf(web)
            answer = await web.post(
                f"/ui/accounts/{ACCOUNT_ID}/unisender-key",
                data={"unisender_key": NEW_KEY, "csrf": token},
            )
        assert answer.status_code == 303, answer.text
        assert "key_connected" in answer.headers["location"]
    await s.settle()


async def problems(s: Stack) -> dict[str, str]:
    body: dict[str, Any] = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()
    return {p["code"]: p["detail"] for p in body["problems"]}


async def unsubscribe_via(s: Stack, url: str) -> int:
    event = {"email": "ann@example.com", "event_name": "unsubscribe", "list_id": 1}
    return (await s.http.post(url, json=event)).status_code


@pytest.mark.parametrize("route", ["admin", "widget", "dashboard"])
async def test_a_new_key_moves_the_hook_from_the_old_key(database_url: str, route: str) -> None:
    async with stack(database_url) as s:
        old_url = await connected(s)
        await replace_key(s, route)
        assert s.sandbox.unisender.hooks.list_hooks(UNISENDER_KEY) == []
        (hook,) = s.sandbox.unisender.hooks.list_hooks(NEW_KEY)
        assert hook["status"] == "active"
        assert hook["events"] == {"unsubscribe": "*"}
        # The old hook's address is retired with the key: another Unisender account's
        # hook left behind could not write here.
        assert hook["hook_url"] != old_url
        assert await unsubscribe_via(s, old_url) == 401
        assert await unsubscribe_via(s, hook["hook_url"]) == 200
        assert "unisender_hook_not_removed" not in await problems(s)
        async with s.services.sessions() as session:
            payloads = (
                await session.scalars(
                    select(Job.payload).where(Job.kind == "unisender_hook_remove")
                )
            ).all()
        # The old key does not stay in the jobs table once its hook is gone.
        assert payloads == [{}]


async def test_the_same_key_again_keeps_the_hook(database_url: str) -> None:
    async with stack(database_url) as s:
        url = await connected(s)
        answer = await s.http.put(f"/accounts/{ACCOUNT_ID}", json={"unisender_key": UNISENDER_KEY})
        assert answer.status_code == 200
        await s.settle()
        assert [h["hook_url"] for h in s.sandbox.unisender.hooks.list_hooks(UNISENDER_KEY)] == [url]
        assert await s.count(Job, Job.kind == "unisender_hook_remove") == 0


async def test_an_old_hook_unisender_will_not_remove_is_shown_and_the_new_key_works(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        old_url = await connected(s)
        # The old key is revoked at Unisender before it is replaced: removeHook with it
        # is refused, and its hook stays in that Unisender account (the sandbox's
        # remove_key would forget the hooks too, so the refusal is a fault here).
        s.sandbox.unisender.add_fault(method="removeHook", code="invalid_api_key", times=None)
        await replace_key(s, "admin")
        assert [h["hook_url"] for h in s.sandbox.unisender.hooks.list_hooks(UNISENDER_KEY)] == [
            old_url
        ]
        (hook,) = s.sandbox.unisender.hooks.list_hooks(NEW_KEY)
        assert hook["status"] == "active"
        found = await problems(s)
        assert "unisender_hook_not_removed" in found
        assert "refuses the replaced key" in found["unisender_hook_not_removed"]
        # The refusal of the OLD key says nothing of the new one.
        assert "unisender_key_invalid" not in found
        body = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()
        assert body["unisender_connected"] is True
        assert await unsubscribe_via(s, old_url) == 401
        async with s.services.sessions() as session:
            job = await session.scalar(select(Job).where(Job.kind == "unisender_hook_remove"))
        assert job is not None
        assert job.status == "failed"
        assert job.attempts == 1  # refused for good: not retried in vain
