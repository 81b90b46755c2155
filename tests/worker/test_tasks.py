"""The task registry: the rows a task queues are those the callers wrote by hand before
(existing rows keep running), every kind has its handler, and the worker imports no domain."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from amosync.accounts.tasks import INSTALL, WEBHOOKS, InstallJob
from amosync.app import job_handlers
from amosync.consent.tasks import CONSENT, UNISENDER_HOOK, UNISENDER_HOOK_REMOVE, RemoveHookJob
from amosync.db.engine import transaction
from amosync.db.models import Account, Job
from amosync.runtime.services import Services
from amosync.segments.tasks import RESYNC
from amosync.sync.tasks import CHANGES, FULL_SYNC, RECONCILE, RECONCILE_EVERY, FullSyncJob
from amosync.worker.context import JobContext
from amosync.worker.runner import Worker
from amosync.worker.tasks import AccountJob, Task, per_account

WORKER = Path(__file__).parents[2] / "src" / "amosync" / "worker"
DOMAINS = ("accounts", "consent", "segments", "sync", "web")

# A kind declared here, as a domain's tasks.py would: nothing in the worker names it.
PROBE = Task("registry_probe", AccountJob, dedupe=per_account("registry_probe"))
probed: list[AccountJob] = []


@PROBE.runs
async def probe(ctx: JobContext) -> None:
    probed.append(PROBE.load(ctx))


async def test_each_task_queues_the_row_its_callers_wrote_before(services: Services) -> None:
    async with transaction(services.sessions) as session:
        session.add(Account(id=7, status="active", settings={}))
        await session.flush()
        await INSTALL.enqueue(session, InstallJob(code="c", host="a.amocrm.ru", client_id="id"))
        await WEBHOOKS.enqueue(session, AccountJob(7))
        await FULL_SYNC.enqueue(session, FullSyncJob(account_id=7, run_id=3))
        await CHANGES.enqueue(session, AccountJob(7))
        await RECONCILE.enqueue(session, AccountJob(7))
        await CONSENT.enqueue(session, AccountJob(7))
        await UNISENDER_HOOK.enqueue(session, AccountJob(7))
        await UNISENDER_HOOK_REMOVE.enqueue(session, RemoveHookJob(7, key="k", token="t"))
        await RESYNC.enqueue(session, AccountJob(7), delay=30)
    async with services.sessions() as session:
        jobs = list((await session.execute(select(Job).order_by(Job.id))).scalars())
    rows = [(j.kind, j.account_id, j.payload, j.dedupe_key, j.max_attempts) for j in jobs]
    assert rows == [
        ("install", None, {"code": "c", "host": "a.amocrm.ru", "client_id": "id"}, None, 10),
        ("webhooks", 7, {}, "webhooks:7", 8),
        ("full_sync", 7, {"run_id": 3}, "full_sync:7", 12),
        ("changes", 7, {}, "changes:7", 8),
        ("reconcile", 7, {}, "reconcile:7", 8),
        ("consent", 7, {}, "consent:7", 8),
        ("unisender_hook", 7, {}, "unisender_hook:7", 8),
        ("unisender_hook_remove", 7, {"key": "k", "token": "t"}, None, 5),
        ("resync", 7, {}, "resync:7", 8),
    ]
    delays = {j.kind: j.run_after - j.created_at for j in jobs}
    assert delays["reconcile"] == timedelta(seconds=RECONCILE_EVERY)
    assert delays["resync"] == timedelta(seconds=30)
    assert delays["changes"] == timedelta(0)


async def test_a_kind_declared_outside_the_worker_is_run_by_it(services: Services) -> None:
    probed.clear()
    async with transaction(services.sessions) as session:
        session.add(Account(id=7, status="active", settings={}))
        await session.flush()
        await PROBE.enqueue(session, AccountJob(7))
        # The same work queued again joins the pending job.
        await PROBE.enqueue(session, AccountJob(7))
    assert await Worker(services).drain(5) == {"processed": 1, "failed": 0, "released": 0}
    assert probed == [AccountJob(7)]


def test_every_kind_in_the_database_has_its_handler() -> None:
    assert set(job_handlers()) - {PROBE.kind} == {
        "install",
        "webhooks",
        "full_sync",
        "changes",
        "reconcile",
        "consent",
        "unisender_hook",
        "unisender_hook_remove",
        "resync",
    }


def test_arguments_are_read_back_from_the_row_whatever_the_job_added(
    services: Services,
) -> None:
    ctx = JobContext(
        services=services,
        job_id=1,
        kind="full_sync",
        account_id=7,
        payload={"run_id": 3, "progress": {"page": 2}},
        attempts=1,
        max_attempts=12,
        worker_id="w/0",
    )
    assert FULL_SYNC.load(ctx) == FullSyncJob(account_id=7, run_id=3)


def test_a_kind_is_declared_once() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        Task("changes", AccountJob)


def test_the_worker_imports_no_domain() -> None:
    found = []
    for path in sorted(WORKER.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            found += [
                f"{path.name}: {name}"
                for name in names
                if name.split(".")[:2] in (["amosync", d] for d in DOMAINS)
            ]
    assert found == []
