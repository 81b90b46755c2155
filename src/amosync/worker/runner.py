"""The worker loop.

A worker claims due jobs one at a time per slot. Claiming a job also takes a lease on its
account (a compare-and-swap on `accounts.lease_owner/lease_until`), so one account is handled
by one worker at a time, whatever the number of processes. Leases are renewed while a job
runs; a crashed worker's leases run out and its jobs become claimable again. On PostgreSQL the
candidate rows are read with FOR UPDATE SKIP LOCKED so workers don't queue behind each other.

Failures: a `PermanentUpstreamError` fails the job at once; anything else is retried with
exponential backoff and jitter until `max_attempts`, then the job is left `failed` with its
last error (visible in the API and retryable).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import and_, or_, select, update

from amosync.db.engine import dialect_name, transaction
from amosync.db.models import Account, Job, utcnow
from amosync.errors import PermanentUpstreamError
from amosync.state import Services
from amosync.worker.queue import backoff

log = structlog.get_logger()

LEASE_SECONDS = 60.0


@dataclass
class JobContext:
    services: Services
    job_id: int
    kind: str
    account_id: int | None
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    worker_id: str

    async def save_payload(self, payload: dict[str, Any]) -> None:
        """Persist progress in the job itself, so a retry continues instead of redoing."""
        self.payload = payload
        async with transaction(self.services.sessions) as session:
            await session.execute(update(Job).where(Job.id == self.job_id).values(payload=payload))


Handler = Callable[[JobContext], Awaitable[None]]


def default_handlers() -> dict[str, Handler]:
    from amosync.worker.handlers import HANDLERS

    return dict(HANDLERS)


@dataclass
class Worker:
    services: Services
    handlers: dict[str, Handler] = field(default_factory=default_handlers)
    concurrency: int = 4
    poll_interval: float = 0.2
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    )
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        """Run until `stop()`; each slot claims and runs jobs."""
        log.info("worker.started", worker_id=self.worker_id, slots=self.concurrency)
        slots = [asyncio.create_task(self._slot(n)) for n in range(self.concurrency)]
        try:
            await asyncio.gather(*slots)
        finally:
            for slot in slots:
                slot.cancel()
            await asyncio.gather(*slots, return_exceptions=True)
            log.info("worker.stopped", worker_id=self.worker_id)

    def stop(self) -> None:
        self._stopping.set()
        self.services.notify_work()

    async def _slot(self, n: int) -> None:
        while not self._stopping.is_set():
            try:
                ran = await self.run_one()
            except Exception:
                log.exception("worker.slot.error", slot=n)
                ran = False
            if not ran:
                await self._idle()

    async def _idle(self) -> None:
        event = self.services.work_ready
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=self.poll_interval)
        event.clear()

    async def drain(self, budget: float) -> dict[str, int]:
        """Run due jobs until none is left or `budget` seconds pass (GET /webhookwork)."""
        deadline = time.monotonic() + budget
        done = failed = 0
        while time.monotonic() < deadline:
            outcome = await self.run_one()
            if outcome is False:
                break
            if outcome == "failed":
                failed += 1
            else:
                done += 1
        return {"processed": done, "failed": failed}

    async def run_one(self) -> bool | str:
        """Claim and run one due job. False when there was nothing to claim."""
        job = await self.claim()
        if job is None:
            return False
        return await self._execute(job)

    async def claim(self) -> JobContext | None:
        now = utcnow()
        lease_until = now + timedelta(seconds=LEASE_SECONDS)
        async with transaction(self.services.sessions) as session:
            query = (
                select(Job.id, Job.account_id)
                .where(
                    or_(
                        and_(Job.status == "pending", Job.run_after <= now),
                        # A job whose worker died: its lease ran out.
                        and_(Job.status == "running", Job.lease_until < now),
                    )
                )
                .order_by(Job.run_after, Job.id)
                .limit(20)
            )
            if dialect_name(session) == "postgresql":
                query = query.with_for_update(skip_locked=True)
            candidates = (await session.execute(query)).all()
            for job_id, account_id in candidates:
                if account_id is not None and not await self._lease_account(
                    session, account_id, lease_until
                ):
                    continue
                claimed = await session.execute(
                    update(Job)
                    .where(
                        Job.id == job_id,
                        or_(
                            Job.status == "pending",
                            and_(Job.status == "running", Job.lease_until < now),
                        ),
                    )
                    .values(
                        status="running",
                        lease_owner=self.worker_id,
                        lease_until=lease_until,
                        attempts=Job.attempts + 1,
                        # A running job holds no key: new work of its kind queues beside it.
                        dedupe_key=None,
                        updated_at=now,
                    )
                    .returning(Job.kind, Job.payload, Job.attempts, Job.max_attempts)
                )
                row = claimed.first()
                if row is None:
                    continue
                kind, payload, attempts, max_attempts = row
                return JobContext(
                    services=self.services,
                    job_id=job_id,
                    kind=kind,
                    account_id=account_id,
                    payload=dict(payload or {}),
                    attempts=attempts,
                    max_attempts=max_attempts,
                    worker_id=self.worker_id,
                )
        return None

    async def _lease_account(self, session: Any, account_id: int, until: Any) -> bool:
        now = utcnow()
        result = await session.execute(
            update(Account)
            .where(
                Account.id == account_id,
                or_(
                    Account.lease_owner.is_(None),
                    Account.lease_until < now,
                    Account.lease_owner == self.worker_id,
                ),
            )
            .values(lease_owner=self.worker_id, lease_until=until)
        )
        return bool(result.rowcount)

    async def _execute(self, job: JobContext) -> str:
        handler = self.handlers.get(job.kind)
        bound = log.bind(job_id=job.job_id, kind=job.kind, account_id=job.account_id)
        renew = asyncio.create_task(self._renew(job))
        started = time.monotonic()
        try:
            if handler is None:
                raise PermanentUpstreamError(f"no handler for job kind {job.kind}", api="worker")
            await handler(job)
        except asyncio.CancelledError:
            # Shutting down: hand the job back untouched so another worker resumes it.
            await self._finish(job, status="pending", error=None, delay=0, count_attempt=False)
            raise
        except Exception as exc:
            permanent = isinstance(exc, PermanentUpstreamError)
            final = permanent or job.attempts >= job.max_attempts
            error = f"{type(exc).__name__}: {exc}"[:2000]
            if final:
                bound.error("job.failed", attempts=job.attempts, error=error)
                await self._finish(job, status="failed", error=error)
                return "failed"
            delay = backoff(job.attempts)
            retry_after = getattr(exc, "retry_after", None)
            if retry_after:
                delay = max(delay, float(retry_after))
            bound.warning("job.retry", attempts=job.attempts, delay=round(delay, 1), error=error)
            await self._finish(job, status="pending", error=error, delay=delay)
            return "retry"
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew
        bound.info("job.done", seconds=round(time.monotonic() - started, 3))
        await self._finish(job, status="done", error=None)
        return "done"

    async def _renew(self, job: JobContext) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            until = utcnow() + timedelta(seconds=LEASE_SECONDS)
            try:
                async with transaction(self.services.sessions) as session:
                    await session.execute(
                        update(Job)
                        .where(Job.id == job.job_id, Job.lease_owner == self.worker_id)
                        .values(lease_until=until)
                    )
                    if job.account_id is not None:
                        await session.execute(
                            update(Account)
                            .where(
                                Account.id == job.account_id,
                                Account.lease_owner == self.worker_id,
                            )
                            .values(lease_until=until)
                        )
            except Exception:
                log.exception("worker.lease.renew_failed", job_id=job.job_id)

    async def _finish(
        self,
        job: JobContext,
        *,
        status: str,
        error: str | None,
        delay: float = 0.0,
        count_attempt: bool = True,
    ) -> None:
        values: dict[str, Any] = {
            "status": status,
            "lease_owner": None,
            "lease_until": None,
            "last_error": error,
            "updated_at": utcnow(),
        }
        if status == "pending":
            values["run_after"] = utcnow() + timedelta(seconds=delay)
        if not count_attempt:
            values["attempts"] = Job.attempts - 1
        async with transaction(self.services.sessions) as session:
            await session.execute(
                update(Job)
                .where(Job.id == job.job_id, Job.lease_owner == self.worker_id)
                .values(**values)
            )
            if job.account_id is not None:
                await session.execute(
                    update(Account)
                    .where(Account.id == job.account_id, Account.lease_owner == self.worker_id)
                    .values(lease_owner=None, lease_until=None)
                )


async def start_inline_worker(services: Services) -> Callable[[], Awaitable[None]]:
    """Start a worker in this process; returns the coroutine function that stops it."""
    worker = Worker(services)
    task = asyncio.create_task(worker.run())

    async def stop() -> None:
        worker.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=20)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return stop
