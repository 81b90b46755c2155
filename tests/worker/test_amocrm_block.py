"""amoCRM's block (403 after 429s): the account is paused for a long while, shows
`amocrm_blocked`, then resumes by itself. Over real HTTP against the sandbox."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import select

from amosync.amocrm import client
from amosync.db.models import Job, PendingChange
from amosync.worker.runner import Worker
from tests.stack import ACCOUNT_ID, stack

PAUSE = 3.5


async def test_a_block_pauses_the_account_then_the_sync_resumes(database_url: str) -> None:
    async with stack(database_url) as s:
        amo = s.sandbox.amocrm
        await s.connect(("Ann", ["ann@example.com"]))
        # The block outlasts the client's in-place retries and ends within the pause.
        amo.block_after_429s, amo.block_seconds = 2, 3.0
        amo.add_fault(429, path="/api/v4/contacts", times=2)
        worker = Worker(s.services, concurrency=1, block_pause=PAUSE)

        started = await s.http.post("/sync", json={"account_id": ACCOUNT_ID})
        run_id = started.json()["run_id"]
        await worker.drain(budget=15)
        blocked_at = time.monotonic()
        assert amo.blocked(ACCOUNT_ID) == 1
        run = (await s.http.get(f"/sync/{run_id}")).json()
        assert run["status"] == "running"  # waiting, not failed
        assert "amoCRM blocked" in run["error"]
        problems = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()["problems"]
        assert [p["code"] for p in problems] == ["amocrm_blocked"]
        assert "blocked" in problems[0]["detail"]
        async with s.services.sessions() as session:
            job = (
                (
                    await session.execute(
                        select(Job).where(Job.kind == "full_sync").order_by(Job.id.desc())
                    )
                )
                .scalars()
                .first()
            )
        assert job is not None
        assert (job.status, job.attempts) == ("pending", 1)
        assert job.last_error is not None
        assert "amoCRM blocked" in job.last_error

        # Meanwhile nothing of the account runs, not even a webhook change due now.
        dee = amo.add_contact(ACCOUNT_ID, name="Dee", emails=["dee@example.com"])
        await amo.flush_webhooks()
        s.sandbox.calls.clear()
        await worker.drain(budget=1)
        assert s.sandbox.calls.count_where(api="amocrm") == 0
        assert s.sandbox.calls.count_where(api="unisender") == 0
        assert await s.count(PendingChange, PendingChange.amocrm_id == dee["id"]) == 1

        # After the pause the run resumes and finishes; the problem is gone.
        await asyncio.sleep(max(0.0, PAUSE - (time.monotonic() - blocked_at)) + 0.1)
        await worker.drain(budget=15)
        run = (await s.http.get(f"/sync/{run_id}")).json()
        assert run["status"] == "done", run
        assert run["error"] is None
        assert (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()["problems"] == []
        assert s.members() == {"ann@example.com", "dee@example.com"}


async def test_a_block_still_on_after_the_pause_pauses_again_in_any_process(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        amo = s.sandbox.amocrm
        await s.connect(("Ann", ["ann@example.com"]))
        amo.block_after_429s, amo.block_seconds = 2, 60.0
        amo.add_fault(429, path="/api/v4/contacts", times=2)
        worker = Worker(s.services, concurrency=1, block_pause=0.5)

        started = await s.http.post("/sync", json={"account_id": ACCOUNT_ID})
        run_id = started.json()["run_id"]
        await worker.drain(budget=15)
        assert amo.blocked(ACCOUNT_ID) == 1
        # Another process resumes it: it never saw the 429s, only the block that is recorded.
        client._rate_limited_at.clear()
        await asyncio.sleep(0.6)
        await worker.drain(budget=5)
        assert amo.blocked(ACCOUNT_ID) == 2
        run = (await s.http.get(f"/sync/{run_id}")).json()
        assert run["status"] == "running"
        codes = [
            p["code"] for p in (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()["problems"]
        ]
        assert codes == ["amocrm_blocked"]

        # amoCRM lifts the block: the next resume finishes.
        amo.account(ACCOUNT_ID).blocked_until = 0.0
        await asyncio.sleep(0.6)
        await worker.drain(budget=15)
        assert (await s.http.get(f"/sync/{run_id}")).json()["status"] == "done"
        assert (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()["problems"] == []
