"""The worker in this process: GET /webhookwork, retries through a Unisender outage, leases."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import stamina
from sqlalchemy import func, select, update

from amosync.db.engine import transaction
from amosync.db.models import Account, Job, PendingChange, utcnow
from amosync.runtime.services import Services
from amosync.worker import queue
from amosync.worker.runner import JobContext, Worker
from tests.stack import ACCOUNT_ID, Stack, stack


async def add_contacts(s: Stack, *emails: str) -> None:
    """Contacts added in amoCRM; their webhooks are stored by the service, not applied."""
    for email in emails:
        s.sandbox.amocrm.add_contact(ACCOUNT_ID, name=email.split("@")[0], emails=[email])
    await s.sandbox.amocrm.flush_webhooks()
    assert all(d.status == 200 for d in s.sandbox.amocrm.deliveries)


async def changes_jobs(s: Stack) -> list[Job]:
    async with s.services.sessions() as session:
        query = select(Job).where(Job.kind == "changes").order_by(Job.id)
        return list((await session.execute(query)).scalars())


async def pending_changes(services: Services) -> int:
    async with services.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(PendingChange)) or 0)


@pytest.fixture
def no_client_retries() -> Iterator[None]:
    """The Unisender client's own in-place retries off: the worker's schedule is under test."""
    with stamina.set_testing(True, attempts=1):
        yield


async def test_webhookwork_runs_the_queue_and_counts(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.connect()
        anonymous = await httpx.AsyncClient(base_url=s.url).get("/webhookwork")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]

        await add_contacts(s, "ann@example.com", "bob@example.com", "cid@example.com")
        assert s.members() == set(), "no worker runs here: only /webhookwork applies changes"

        # No time for the job: it is handed back, still due, and its attempt not counted.
        cut = await s.http.get("/webhookwork", params={"budget": 0.001})
        assert cut.json() == {"processed": 0, "failed": 0, "pending": 1}
        assert [job.attempts for job in await changes_jobs(s)] == [0]

        done = await s.http.get("/webhookwork")
        assert done.status_code == 200
        assert done.json() == {"processed": 1, "failed": 0, "pending": 0}
        assert s.members() == {"ann@example.com", "bob@example.com", "cid@example.com"}
        assert await pending_changes(s.services) == 0

        with stamina.set_testing(True, attempts=1):
            s.sandbox.unisender.add_fault(method="importContacts", status=503, times=None)
            await add_contacts(s, "dan@example.com")
            failing = await s.http.get("/webhookwork")
        # Failed and rescheduled with backoff: not due any more.
        assert failing.json() == {"processed": 0, "failed": 1, "pending": 0}
        assert "dan@example.com" not in s.members()


@pytest.mark.usefixtures("no_client_retries")
async def test_unisender_outage_delays_changes_but_loses_none(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.connect()
        uni = s.sandbox.unisender
        uni.add_fault(method="importContacts", status=503, times=None)
        await add_contacts(s, "ann@example.com", "bob@example.com")

        worker = Worker(s.services, retry_delay=lambda _attempt: 0.2)
        failed = 0
        for _ in range(3):
            failed += (await worker.drain(5))["failed"]
            await asyncio.sleep(0.25)
        [job] = await changes_jobs(s)
        assert job.status == "pending"
        assert job.attempts == failed == 3
        assert job.last_error is not None
        assert "503" in job.last_error
        assert s.members() == set()
        assert await pending_changes(s.services) == 2

        uni.clear_faults()
        await asyncio.sleep(0.25)
        assert (await worker.drain(5))["processed"] == 1
        [job] = await changes_jobs(s)
        assert job.status == "done"
        assert s.members() == {"ann@example.com", "bob@example.com"}
        assert await pending_changes(s.services) == 0


@pytest.mark.usefixtures("no_client_retries")
async def test_a_job_out_of_attempts_is_failed_and_retry_brings_it_back(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.connect()
        uni = s.sandbox.unisender
        uni.add_fault(method="importContacts", status=503, times=None)
        await add_contacts(s, "ann@example.com")

        result = await Worker(s.services, retry_delay=lambda _attempt: 0.0).drain(10)
        [job] = await changes_jobs(s)
        assert result["failed"] == job.max_attempts == job.attempts
        assert job.status == "failed"
        assert job.last_error is not None
        assert "importContacts: HTTP 503" in job.last_error
        assert await pending_changes(s.services) == 1, "the change itself is kept"

        uni.clear_faults()
        async with transaction(s.services.sessions) as session:
            assert await queue.retry(session, job.id)
        await s.settle()
        assert s.members() == {"ann@example.com"}
        [job] = await changes_jobs(s)
        assert job.status == "done"
        assert await pending_changes(s.services) == 0


@pytest.mark.usefixtures("no_client_retries")
async def test_the_periodic_pass_requeues_changes_whose_job_failed(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.connect()
        s.sandbox.unisender.add_fault(method="importContacts", status=503, times=None)
        await add_contacts(s, "ann@example.com")
        await Worker(s.services, retry_delay=lambda _attempt: 0.0).drain(10)
        assert [job.status for job in await changes_jobs(s)] == ["failed"]

        s.sandbox.unisender.clear_faults()
        await s.make_due("reconcile")
        await s.settle()
        assert s.members() == {"ann@example.com"}
        assert [job.status for job in await changes_jobs(s)] == ["failed", "done"]


# --- leases, with jobs of a test kind and no upstream ------------------------------------


async def accounts_with_jobs(services: Services, jobs: dict[int, int]) -> None:
    async with transaction(services.sessions) as session:
        for account_id, count in jobs.items():
            session.add(Account(id=account_id, status="active", settings={}))
            await session.flush()
            for _ in range(count):
                await queue.enqueue(session, "probe", account_id=account_id)


async def test_two_slots_of_one_worker_never_run_one_account_at_once(
    services: Services,
) -> None:
    await accounts_with_jobs(services, {1: 3, 2: 1})
    running: Counter[int] = Counter()
    most: Counter[int] = Counter()
    order: list[int] = []

    async def probe(ctx: JobContext) -> None:
        assert ctx.account_id is not None
        running[ctx.account_id] += 1
        most[ctx.account_id] = max(most[ctx.account_id], running[ctx.account_id])
        order.append(ctx.account_id)
        await asyncio.sleep(0.1)
        running[ctx.account_id] -= 1

    worker = Worker(services, handlers={"probe": probe}, concurrency=4, poll_interval=0.02)
    task = asyncio.create_task(worker.run())
    async with asyncio.timeout(10):
        while len(order) < 4 or any(running.values()):
            await asyncio.sleep(0.02)
    worker.stop()
    await task
    assert most == {1: 1, 2: 1}
    # Account 2 did not wait behind account 1's queue.
    assert order.index(2) == 1
    async with services.sessions() as session:
        assert set((await session.execute(select(Job.status))).scalars()) == {"done"}
        leases = (await session.execute(select(Account.lease_owner))).scalars().all()
        assert leases == [None, None]


async def test_a_busy_account_does_not_hide_the_rest_of_the_queue(services: Services) -> None:
    # Account 1 is leased by another worker and has more due jobs than a claim looks at.
    await accounts_with_jobs(services, {1: 30, 2: 1})
    async with transaction(services.sessions) as session:
        await session.execute(
            update(Account)
            .where(Account.id == 1)
            .values(lease_owner="elsewhere/0", lease_until=utcnow().replace(year=2100))
        )
    ran: list[int | None] = []

    async def probe(ctx: JobContext) -> None:
        ran.append(ctx.account_id)

    result = await Worker(services, handlers={"probe": probe}).drain(5)
    assert ran == [2]
    assert result == {"processed": 1, "failed": 0, "released": 0}
