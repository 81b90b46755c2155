"""Several `amosync worker` processes on one PostgreSQL database (SPEC §1: the scale-out)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from amosync.db.engine import transaction
from amosync.db.models import Account, Job, PendingChange, utcnow
from amosync.worker import queue
from tests.servers import serving
from tests.stack import Stack, stack
from tests.worker.processes import Process, UnisenderTap, env_for

ACCOUNTS = [1001, 1002, 1003, 1004, 1005, 1006]
CONTACTS = 30  # per account
SLOTS = 3
GATE = "test-gate"


def key(account_id: int) -> str:
    return f"unisender-key-{account_id}"


def address(account_id: int, n: int, version: int) -> str:
    return f"c{n}.v{version}@a{account_id}.example"


async def write_contacts(s: Stack, ids: dict[int, list[int]], version: int) -> None:
    """Every contact gets a new address in amoCRM; the webhooks are stored, not applied."""
    amo = s.sandbox.amocrm
    for account_id, contacts in ids.items():
        for n, contact_id in enumerate(contacts):
            amo.update_contact(account_id, contact_id, emails=[address(account_id, n, version)])
    await amo.flush_webhooks(timeout=60)


async def set_gate(s: Stack, closed: bool) -> None:
    """Hold every account's lease ourselves (closed), so workers can start up idle."""
    async with transaction(s.services.sessions) as session:
        await session.execute(
            update(Account)
            .where(Account.id.in_(ACCOUNTS))
            .values(
                lease_owner=GATE if closed else None,
                lease_until=utcnow() + timedelta(hours=1) if closed else None,
            )
        )


async def drained(s: Stack) -> bool:
    async with s.services.sessions() as session:
        changes = await session.scalar(select(func.count()).select_from(PendingChange))
        jobs = await session.scalar(
            select(func.count()).where(
                Job.kind == "changes", Job.status.in_(("pending", "running"))
            )
        )
    return changes == 0 and jobs == 0


async def drain_with(s: Stack, workers: int, env: dict[str, str], tmp_path: Path) -> float:
    """Seconds `workers` processes take to apply the queued changes of every account."""
    await set_gate(s, closed=True)
    processes = [
        Process(["worker", "--slots", str(SLOTS)], env, tmp_path / f"w{workers}-{n}.log")
        for n in range(workers)
    ]
    try:
        for process in processes:
            await process.wait_for_output('"worker.started"')
        await set_gate(s, closed=False)
        started = time.monotonic()
        async with asyncio.timeout(60):
            while not await drained(s):
                await asyncio.sleep(0.02)
        elapsed = time.monotonic() - started
        for process in processes:
            assert '"job.done"' in process.output(), "every process took a share"
            assert '"job.failed"' not in process.output()
        return elapsed
    finally:
        for process in processes:
            process.close()


async def queue_extra_jobs(s: Stack) -> None:
    """Two more `changes` jobs per account, due first: what a running job and webhooks
    arriving meanwhile leave in the queue. Without account leases, slots would run them
    side by side."""
    async with transaction(s.services.sessions) as session:
        for account_id in ACCOUNTS:
            for _ in range(2):
                await queue.enqueue(session, "changes", account_id=account_id, delay=-5)


async def test_two_workers_share_the_accounts_and_never_one_account_twice(
    database_url: str, tmp_path: Path
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("several worker processes are a PostgreSQL feature (SPEC §1)")
    async with stack(database_url, unisender_rpm=600_000) as s:
        amo = s.sandbox.amocrm
        amo.webhook_concurrency = 8
        ids: dict[int, list[int]] = {}
        for account_id in ACCOUNTS:
            await s.install(account_id=account_id, subdomain=f"a{account_id}")
            await s.connect_unisender(account_id=account_id, key=key(account_id))
            ids[account_id] = [
                amo.add_contact(account_id, name=f"C{n}", emails=[address(account_id, n, 0)])["id"]
                for n in range(CONTACTS)
            ]
        await amo.flush_webhooks(timeout=60)
        await s.settle()
        for account_id in ACCOUNTS:
            assert len(s.members(key(account_id))) == CONTACTS

        # Each account's backlog: CONTACTS new addresses (one importContacts) and as many
        # old ones to exclude (one call each), every call taking 50 ms.
        tap = UnisenderTap(s.sandbox)
        s.sandbox.unisender.latency = 0.05
        async with serving(tap) as tap_url:
            env = env_for(s.settings, unisender_base_url=f"{tap_url}/ru/api")
            timings = {}
            for version, workers in ((1, 1), (2, 2)):
                await write_contacts(s, ids, version)
                await queue_extra_jobs(s)
                timings[workers] = await drain_with(s, workers, env, tmp_path)
                for account_id in ACCOUNTS:
                    expected = {address(account_id, n, version) for n in range(CONTACTS)}
                    assert s.members(key(account_id)) == expected

        print(f"drain: 1 worker {timings[1]:.2f} s, 2 workers {timings[2]:.2f} s")  # noqa: T201
        assert timings[2] < 0.75 * timings[1], timings
        calls = len(tap.windows)
        assert calls >= 2 * len(ACCOUNTS) * (CONTACTS + 1)
        assert tap.overlaps() == [], "an account was handled by two slots at once"
        async with s.services.sessions() as session:
            leases = (await session.execute(select(Account.lease_owner))).scalars().all()
            running = await session.scalar(select(func.count()).where(Job.status == "running"))
        assert set(leases) == {None}
        assert running == 0
