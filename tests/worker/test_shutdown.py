"""Graceful SIGTERM of `amosync worker`: it stops within seconds and leaves no job running."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from sqlalchemy import select

from amosync.db.models import Job, PendingChange
from amosync.worker.runner import Worker
from tests.servers import serving
from tests.stack import ACCOUNT_ID, stack
from tests.worker.processes import Process, UnisenderTap, env_for


async def test_sigterm_lets_a_running_job_finish(database_url: str, tmp_path: Path) -> None:
    async with stack(database_url) as s:
        await s.connect()
        tap = UnisenderTap(s.sandbox, hold={"importContacts"})
        async with serving(tap) as tap_url:
            # The webhook must arrive for there to be a job to stop: amoCRM's 2-second wait
            # once timed out here on a loaded machine (a CI run), and nothing was stored.
            s.sandbox.amocrm.webhook_timeout = 10.0
            s.sandbox.amocrm.add_contact(ACCOUNT_ID, name="Ann", emails=["ann@example.com"])
            await s.sandbox.amocrm.flush_webhooks()
            env = env_for(s.settings, unisender_base_url=f"{tap_url}/ru/api")
            worker = Process(["worker", "--slots", "2"], env, tmp_path / "worker.log")
            try:
                async with asyncio.timeout(20):
                    while tap.held == 0:
                        await asyncio.sleep(0.02)
                worker.signal(signal.SIGTERM)
                await asyncio.sleep(0.5)
                assert worker.alive(), "the worker must wait for its running job"
                tap.release()
                stopped = time.monotonic()
                assert await worker.wait_exit(5) == 0, worker.output()
                assert time.monotonic() - stopped < 3
            finally:
                worker.close()
        assert await s.count(Job, Job.status == "running") == 0
        assert await s.count(Job, Job.kind == "changes", Job.status != "done") == 0
        assert s.members() == {"ann@example.com"}
        assert '"worker.stopped"' in worker.output()


async def test_sigterm_hands_back_a_job_that_does_not_finish(
    database_url: str, tmp_path: Path
) -> None:
    async with stack(database_url) as s:
        await s.connect()
        tap = UnisenderTap(s.sandbox, hold={"importContacts"})
        async with serving(tap) as tap_url:
            s.sandbox.amocrm.add_contact(ACCOUNT_ID, name="Bob", emails=["bob@example.com"])
            await s.sandbox.amocrm.flush_webhooks()
            env = env_for(s.settings, unisender_base_url=f"{tap_url}/ru/api")
            worker = Process(["worker"], env, tmp_path / "worker.log")
            try:
                async with asyncio.timeout(20):
                    while tap.held == 0:
                        await asyncio.sleep(0.02)
                stopped = time.monotonic()
                worker.signal(signal.SIGTERM)
                # Within the grace period (5 s) and a little.
                assert await worker.wait_exit(8) == 0, worker.output()
                assert time.monotonic() - stopped < 7
            finally:
                tap.release()
                worker.close()
        async with s.services.sessions() as session:
            [job] = (await session.execute(select(Job).where(Job.kind == "changes"))).scalars()
        assert job.status == "pending"
        assert job.attempts == 0, "a job handed back on shutdown keeps its attempts"
        assert job.lease_owner is None
        assert await s.count(Job, Job.status == "running") == 0
        assert await s.count(PendingChange) == 1
        assert '"job.released"' in worker.output()

        # Nothing lost: the next worker applies it.
        await Worker(s.services).drain(10)
        assert s.members() == {"bob@example.com"}
