"""Permanent failures end work at once, say what to do, mark the account, and are not
retried until their cause changes (SPEC §3 `problems`, §4). Over real HTTP against the
sandbox."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from amosync.db.engine import transaction
from amosync.db.models import Job, PendingChange, SyncRun
from amosync.worker import queue
from tests.stack import ACCOUNT_ID, UNISENDER_KEY, Stack, stack

NEW_KEY = "sandbox-unisender-key-0002"


async def account(s: Stack) -> dict[str, Any]:
    response = await s.http.get(f"/accounts/{ACCOUNT_ID}")
    assert response.status_code == 200
    return dict(response.json())


async def connected(s: Stack) -> bool:
    response = await s.http.get("/acchasuni", params={"account_id": ACCOUNT_ID})
    return bool(response.json()["connected"])


async def failing_sync(s: Stack) -> tuple[dict[str, Any], float]:
    """Start a full sync, run the queue, return the run and the seconds it took."""
    started = time.monotonic()
    answer = await s.http.post("/sync", json={"account_id": ACCOUNT_ID})
    assert answer.status_code == 202, answer.text
    await s.settle(timeout=20)
    run = (await s.http.get(f"/sync/{answer.json()['run_id']}")).json()
    return dict(run), time.monotonic() - started


async def sync_jobs(s: Stack) -> list[Job]:
    async with s.services.sessions() as session:
        rows = await session.execute(
            select(Job)
            .where(Job.kind == "full_sync", Job.account_id == ACCOUNT_ID)
            .order_by(Job.id)
        )
        return list(rows.scalars())


async def installed(s: Stack) -> None:
    await s.connect(("Ann", ["ann@example.com"]), ("Bob", ["bob@example.com"]))
    assert s.members() == {"ann@example.com", "bob@example.com"}


async def test_a_revoked_token_fails_the_run_at_once_until_installed_again(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        await installed(s)
        s.sandbox.amocrm.revoke_tokens(ACCOUNT_ID)

        run, seconds = await failing_sync(s)
        assert run["status"] == "failed"
        assert seconds < 10
        error = run["error"]
        assert "ExceptionGroup" not in error
        assert "amoCRM" in error
        assert "install" in error.lower()
        [_, job] = await sync_jobs(s)
        assert job.status == "failed"
        assert job.attempts == 1  # not retried
        assert job.last_error is not None
        assert "ExceptionGroup" not in job.last_error

        body = await account(s)
        assert body["status"] == "reauth_required"
        assert [p["code"] for p in body["problems"]] == ["reauth_required"]

        # Installing again clears it; the dashboard's retry of the failed job starts a new
        # run, which finishes.
        await s.install()
        assert (await account(s))["problems"] == []
        s.sandbox.amocrm.add_contact(ACCOUNT_ID, name="Cy", emails=["cy@example.com"])
        async with transaction(s.services.sessions) as session:
            assert await queue.retry(session, job.id)
        await s.settle()
        async with s.services.sessions() as session:
            runs = list((await session.execute(select(SyncRun).order_by(SyncRun.id))).scalars())
        assert [r.status for r in runs] == ["done", "failed", "done"]
        assert s.members() == {"ann@example.com", "bob@example.com", "cy@example.com"}


@pytest.mark.parametrize("connect", ["widget", "admin"])
async def test_a_dead_unisender_key_fails_at_once_and_a_new_key_clears_it(
    database_url: str, connect: str
) -> None:
    async with stack(database_url) as s:
        await installed(s)
        s.sandbox.unisender.remove_key(UNISENDER_KEY)

        run, seconds = await failing_sync(s)
        assert run["status"] == "failed"
        assert seconds < 10
        error = run["error"]
        assert "ExceptionGroup" not in error
        assert "Unisender" in error
        assert "key" in error
        [_, job] = await sync_jobs(s)
        assert (job.status, job.attempts) == ("failed", 1)

        body = await account(s)
        assert body["unisender_connected"] is False
        assert await connected(s) is False
        assert [p["code"] for p in body["problems"]] == ["unisender_key_invalid"]

        # A webhook change meanwhile: not sent with the refused key, kept for later.
        contact = s.sandbox.amocrm.add_contact(ACCOUNT_ID, name="Dee", emails=["dee@example.com"])
        await s.sandbox.amocrm.flush_webhooks()
        s.sandbox.calls.clear()
        await s.settle()
        assert s.sandbox.calls.count_where(api="unisender") == 0
        assert await s.count(PendingChange, PendingChange.amocrm_id == contact["id"]) == 1
        assert [p["code"] for p in (await account(s))["problems"]] == ["unisender_key_invalid"]

        # A new key: the problem is gone, the kept change and a new full sync go through.
        if connect == "widget":
            await s.connect_unisender(key=NEW_KEY)
        else:
            s.sandbox.unisender.add_key(NEW_KEY)
            list_id = s.sandbox.unisender.create_list(NEW_KEY, "amoCRM contacts")
            put = await s.http.put(
                f"/accounts/{ACCOUNT_ID}", json={"unisender_key": NEW_KEY, "list_id": list_id}
            )
            assert put.status_code == 200, put.text
            assert put.json()["problems"] == []
            assert (await s.http.post("/sync", json={"account_id": ACCOUNT_ID})).status_code == 202
        assert (await account(s))["problems"] == []
        assert await connected(s) is True
        await s.settle()
        assert s.members(NEW_KEY) == {"ann@example.com", "bob@example.com", "dee@example.com"}
        assert (await account(s))["last_sync"]["status"] == "done"


async def test_a_refused_request_fails_at_once_with_what_amocrm_said(database_url: str) -> None:
    async with stack(database_url) as s:
        await installed(s)
        s.sandbox.amocrm.add_fault(400, path="/api/v4/contacts", times=None)

        run, seconds = await failing_sync(s)
        assert run["status"] == "failed"
        assert seconds < 10
        error = run["error"]
        assert "ExceptionGroup" not in error
        assert "amoCRM refused" in error
        assert "400" in error
        [_, job] = await sync_jobs(s)
        assert (job.status, job.attempts) == ("failed", 1)
        problems = (await account(s))["problems"]
        assert [p["code"] for p in problems] == ["request_refused"]

        # Once amoCRM accepts the request again, a new sync finishes and the problem goes.
        s.sandbox.amocrm.clear_faults()
        answer = await s.http.post("/sync", json={"account_id": ACCOUNT_ID})
        assert answer.json()["run_id"] != run["run_id"]
        await s.settle()
        assert (await account(s))["last_sync"]["status"] == "done"
        assert (await account(s))["problems"] == []


async def test_a_webhook_change_meeting_a_dead_key_fails_at_once_and_marks_the_account(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        await installed(s)
        s.sandbox.unisender.remove_key(UNISENDER_KEY)
        dee = s.sandbox.amocrm.add_contact(ACCOUNT_ID, name="Dee", emails=["dee@example.com"])
        await s.sandbox.amocrm.flush_webhooks()
        await s.settle(timeout=20)

        async with s.services.sessions() as session:
            [job] = (
                await session.execute(
                    select(Job).where(Job.kind == "changes", Job.status == "failed")
                )
            ).scalars()
        assert job.attempts == 1
        assert job.last_error is not None
        assert job.last_error.startswith("Unisender refused the API key")
        assert await connected(s) is False
        assert [p["code"] for p in (await account(s))["problems"]] == ["unisender_key_invalid"]
        # The change is kept for the next key, not dropped.
        assert await s.count(PendingChange, PendingChange.amocrm_id == dee["id"]) == 1
