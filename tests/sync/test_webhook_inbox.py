"""POST /webhook's inbox (sync.webhooks.WebhookInbox): group commit, remembered tokens
re-checked."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError
from structlog.testing import capture_logs

from amosync.amocrm.webhooks import parse_webhook
from amosync.db.engine import transaction
from amosync.db.models import Account, Job, PendingChange, WebhookEvent
from amosync.runtime.services import Services
from amosync.sync.webhooks import WebhookInbox
from tests.stack import ACCOUNT_ID, Stack, stack

FORM = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": ""}


def body(contact_id: int, email: str, name: str | None = None, modified: int = 1700000000) -> str:
    prefix = "contacts[update][0]"
    return urlencode(
        [
            (f"{prefix}[id]", str(contact_id)),
            (f"{prefix}[name]", name or f"Contact {contact_id}"),
            (f"{prefix}[last_modified]", str(modified)),
            (f"{prefix}[custom_fields][0][id]", "55"),
            (f"{prefix}[custom_fields][0][code]", "EMAIL"),
            (f"{prefix}[custom_fields][0][values][0][value]", email),
            ("account[id]", str(ACCOUNT_ID)),
        ]
    )


async def installed(s: Stack) -> str:
    """Install the account; returns its webhook URL (with the token)."""
    await s.connect()
    return str(s.sandbox.amocrm.webhooks(ACCOUNT_ID)[0]["destination"])


async def accepted(s: Stack, url: str, content: str) -> None:
    """A webhook the service answers with its 200."""
    assert (await s.http.post(url, content=content, headers=FORM)).status_code == 200


async def test_webhooks_arriving_together_share_a_commit(database_url: str) -> None:
    async with stack(database_url) as s:
        url = await installed(s)
        commits = 0

        def counted(_connection: object) -> None:
            nonlocal commits
            commits += 1

        event.listen(s.services.engine.sync_engine, "commit", counted)
        bodies = [body(n, f"c{n}@example.com") for n in range(1, 61)]
        # The same contact twice: a newer state and an older one arriving after it.
        bodies += [
            body(1, "newest@example.com", modified=1700000100),
            body(1, "older@example.com", modified=1700000050),
        ]
        answers = await asyncio.gather(*(s.http.post(url, content=b, headers=FORM) for b in bodies))
        event.remove(s.services.engine.sync_engine, "commit", counted)

        assert [a.status_code for a in answers] == [200] * len(bodies)
        assert all(
            a.json() == {"accepted": 1, "added": 0, "updated": 1, "deleted": 0} for a in answers
        )
        assert commits < len(bodies) / 2, f"{commits} commits for {len(bodies)} webhooks"
        assert await s.count(PendingChange) == 60
        assert await s.count(WebhookEvent) == len(bodies)
        async with s.services.sessions() as session:
            first = await session.get(PendingChange, (ACCOUNT_ID, 1))
            jobs = await session.scalar(
                select(func.count()).where(Job.kind == "changes", Job.status == "pending")
            )
        assert first is not None
        assert first.emails == ["newest@example.com"]
        assert jobs == 1


async def test_a_remembered_token_is_refused_once_the_account_is_deleted(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        url = await installed(s)
        await accepted(s, url, body(1, "a@example.com"))
        assert (await s.http.delete(f"/accounts/{ACCOUNT_ID}")).status_code == 204

        refused = await s.http.post(url, content=body(2, "b@example.com"), headers=FORM)
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_webhook_token"
        assert await s.count(PendingChange) == 0


async def test_a_disconnected_account_s_webhooks_are_acknowledged_and_dropped(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        url = await installed(s)
        await accepted(s, url, body(1, "a@example.com"))
        await s.settle()
        rpc = {"jsonrpc": "2.0", "id": 1, "method": "account.disconnect"}
        answer = await s.http.post("/rpc", json={**rpc, "params": {"account_id": ACCOUNT_ID}})
        assert answer.json()["result"]["disconnected"] is True

        dropped = await s.http.post(url, content=body(2, "b@example.com"), headers=FORM)
        assert dropped.status_code == 200
        assert dropped.json() == {"accepted": 0, "ignored": True}
        assert await s.count(PendingChange) == 0


async def test_a_name_longer_than_the_column_is_cut_not_refused(database_url: str) -> None:
    async with stack(database_url) as s:
        url = await installed(s)
        answer = await s.http.post(
            url, content=body(8, "c8@example.com", name="x" * 600), headers=FORM
        )
        assert answer.status_code == 200
        await s.settle()
        synced = (await s.http.get("/accounts/sync", params={"account_id": ACCOUNT_ID})).json()
        assert [(c["amocrm_id"], len(c["name"])) for c in synced["items"]] == [(8, 512)]


async def test_a_failed_batch_is_retried_one_webhook_at_a_time(services: Services) -> None:
    failed = False

    def fail_once(*args: Any) -> None:
        """The first statement run for several webhooks fails, as a deadlock would."""
        nonlocal failed
        executemany = args[-1]
        if not failed and executemany:
            failed = True
            raise OperationalError("INSERT", {}, Exception("deadlock detected"))

    async with transaction(services.sessions) as session:
        session.add(Account(id=7, status="active", settings={}, webhook_token_hash="h7"))
    notified = 0

    def notify() -> None:
        nonlocal notified
        notified += 1

    inbox = WebhookInbox(services.engine, on_stored=notify)
    payloads = [parse_webhook(body(n, f"c{n}@example.com").encode()) for n in range(1, 11)]
    assert await inbox.account_for("h7") == 7
    assert await inbox.account_for("unknown") is None
    event.listen(services.engine.sync_engine, "before_cursor_execute", fail_once)
    try:
        counts = await asyncio.gather(*(inbox.store(7, "h7", p) for p in payloads))
    finally:
        event.remove(services.engine.sync_engine, "before_cursor_execute", fail_once)
        await inbox.aclose()
    assert failed
    assert counts == [{"added": 0, "updated": 1, "deleted": 0}] * 10
    async with services.sessions() as session:
        stored = await session.scalar(select(func.count()).select_from(PendingChange))
    assert stored == 10
    assert notified == 10, "stored one by one after the batch failed"


async def test_an_unexpected_failure_is_a_500_in_the_usual_shape(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /webhook is answered before the middleware stack: its errors must still go
    through the app's handlers (no traceback to amoCRM, the error logged)."""
    async with stack(database_url) as s:
        url = await installed(s)

        async def broken(*_args: object) -> None:
            raise RuntimeError("the disk is on fire")

        monkeypatch.setattr(WebhookInbox, "store", broken)
        with capture_logs() as logs:
            failed = await s.http.post(url, content=body(1, "a@example.com"), headers=FORM)
        assert failed.status_code == 500
        assert failed.json() == {
            "error": "internal_error",
            "detail": "something went wrong on our side; it has been logged",
        }
        assert [entry["path"] for entry in logs if entry["event"] == "request.failed"] == [
            "/webhook"
        ]
        monkeypatch.undo()
        stored = await s.http.post(url, content=body(1, "a@example.com"), headers=FORM)
        assert stored.status_code == 200

        other = await s.http.get(url)
        assert other.status_code == 405
        assert other.json()["error"] == "method_not_allowed"


async def test_the_inbox_gives_its_connection_back_when_the_service_stops(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        url = await installed(s)
        pool = s.services.engine.pool
        answer = await s.http.post(url, content=body(1, "a@example.com"), headers=FORM)
        assert answer.status_code == 200
        assert pool.checkedout() == 1, "the writer keeps its connection between batches"
    assert pool.checkedout() == 0


async def test_a_batch_of_several_accounts_queues_one_job_for_each(services: Services) -> None:
    async with transaction(services.sessions) as session:
        for account_id in (7, 8):
            session.add(
                Account(
                    id=account_id, status="active", settings={}, webhook_token_hash=f"h{account_id}"
                )
            )
    inbox = WebhookInbox(services.engine)
    try:
        for _ in range(2):  # the second round joins the jobs the first one queued
            stored = await asyncio.gather(
                *(
                    inbox.store(
                        account_id,
                        f"h{account_id}",
                        parse_webhook(body(n, "a@example.com").encode()),
                    )
                    for account_id in (7, 8)
                    for n in (1, 2)
                )
            )
            assert stored == [{"added": 0, "updated": 1, "deleted": 0}] * 4
    finally:
        await inbox.aclose()
    async with services.sessions() as session:
        jobs = (await session.execute(select(Job.account_id, Job.dedupe_key, Job.status))).all()
    assert sorted(jobs) == [(7, "changes:7", "pending"), (8, "changes:8", "pending")]
