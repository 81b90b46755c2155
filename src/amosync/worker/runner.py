"""The worker loop.

A worker runs `concurrency` slots; each claims due jobs one at a time. Claiming a job also
takes a lease on its account (a compare-and-swap on `accounts.lease_owner/lease_until`), so
one account is handled by one slot at a time, whatever the number of slots and processes.
Each slot leases under its own owner id (`<worker id>/<slot>`), so two slots of one process
exclude each other exactly as two processes do. Leases are renewed while a job runs; a
crashed worker's leases run out and its jobs become claimable again. Jobs of accounts that
another slot holds are left out of the candidates in SQL, so a few busy accounts never hide
the rest of the queue. On PostgreSQL the candidate rows are read with FOR UPDATE SKIP LOCKED
so workers don't queue behind each other.

Failures: the root cause counts (a TaskGroup's ExceptionGroup is unwrapped). A permanent
one (`amosync.errors.is_permanent`: a vendor's refusal, work amosync stopped itself, a 4xx of
ours) fails the job at once, with an error a person can act on, and marks
the account (through the `AccountHooks` the accounts domain registers, `worker/tasks.py`);
an `AmoCRMBlocked` pauses the whole account for `block_pause` seconds (its jobs are not
claimed meanwhile, `amocrm_blocked` is shown), then the job resumes; anything else is retried
with exponential backoff and jitter until `max_attempts`, then the job is left `failed` with
its last error (visible in the API and retryable).

Stopping (SIGTERM, the app shutting down): slots stop claiming, running jobs get `grace`
seconds to finish, then they are cancelled and handed back to the queue untouched (the
attempt is not counted), so another worker resumes them at once.
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
from pathlib import Path
from typing import Any, Literal

import structlog

from amosync.db.engine import transaction
from amosync.db.models import JobStatus, utcnow
from amosync.errors import AmoCRMBlocked, UnknownJob, is_permanent, root_cause
from amosync.runtime.services import Services
from amosync.worker import queue
from amosync.worker.context import Handler, JobContext
from amosync.worker.queue import Finish, backoff
from amosync.worker.tasks import AccountHooks, account_hooks, registered

log = structlog.get_logger()

LEASE_SECONDS = 60.0
# How many due jobs one claim looks at; the first whose account it can lease wins.
CANDIDATES = 20
# How long an account blocked by amoCRM (403 after 429s) is left alone. amoCRM's
# documentation says requests are restricted after repeated excess, not for how long;
# minutes keep us from prolonging the block. Tests shorten it (`Worker(block_pause=...)`).
BLOCK_PAUSE = 10 * 60.0

Outcome = Literal["done", "retry", "failed", "released"]


__all__ = ["Handler", "JobContext", "Worker", "start_inline_worker"]


def _default_worker_id() -> str:
    # Leases are String(64): keep room for the slot suffix whatever the host name.
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Worker:
    services: Services
    # The registered tasks' handlers by kind (`amosync.worker.tasks`), unless given.
    handlers: dict[str, Handler] = field(default_factory=registered)
    hooks: AccountHooks = field(default_factory=account_hooks)
    concurrency: int = 4
    poll_interval: float = 0.2
    # Seconds to wait before retrying a job after its n-th failed attempt.
    retry_delay: Callable[[int], float] = backoff
    # Seconds running jobs get to finish once `stop()` is called, before they are handed back.
    grace: float = 5.0
    # Seconds an account blocked by amoCRM waits before its jobs run again.
    block_pause: float = BLOCK_PAUSE
    worker_id: str = field(default_factory=_default_worker_id)
    # A file touched after every claim and lease renewal: `amosync worker --check` (the
    # container's health check) reads its age to tell a worker that stopped claiming work.
    heartbeat: Path | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _last_beat: float = 0.0

    async def run(self) -> None:
        """Run until `stop()`; each slot claims and runs jobs."""
        log.info("worker.started", worker_id=self.worker_id, slots=self.concurrency)
        slots = [asyncio.create_task(self._slot(n)) for n in range(self.concurrency)]
        try:
            await self._stopping.wait()
            # Idle slots leave at once; busy ones finish their job or run out of grace.
            _, busy = await asyncio.wait(slots, timeout=self.grace)
            if busy:
                log.warning("worker.stop.releasing", worker_id=self.worker_id, jobs=len(busy))
        finally:
            for slot in slots:
                slot.cancel()
            await asyncio.gather(*slots, return_exceptions=True)
            log.info("worker.stopped", worker_id=self.worker_id)

    def stop(self) -> None:
        """Stop claiming; running jobs get `grace` seconds, then are handed back."""
        self._stopping.set()
        self.services.notify_work()

    def owner(self, slot: int) -> str:
        return f"{self.worker_id}/{slot}"

    async def _slot(self, n: int) -> None:
        while not self._stopping.is_set():
            try:
                ran = await self.run_one(slot=n)
                self._beat()
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
        """Run due jobs until none is left or `budget` seconds pass (GET /webhookwork).

        Returns `processed` (jobs that ran to the end), `failed` (jobs whose attempt failed:
        retried later, or failed for good after their last attempt) and `released` (a job
        still running when the budget ran out, handed back to the queue).
        """
        deadline = time.monotonic() + budget
        counts = {"processed": 0, "failed": 0, "released": 0}
        while time.monotonic() < deadline:
            job = await self.claim()
            if job is None:
                break
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    outcome = await self._execute(job)
            except TimeoutError:
                # `_execute` handed the job back when it was cancelled.
                counts["released"] += 1
                break
            if outcome == "done":
                counts["processed"] += 1
            elif outcome in ("retry", "failed"):
                counts["failed"] += 1
        return counts

    async def run_one(self, slot: int = 0) -> Outcome | Literal[False]:
        """Claim and run one due job. False when there was nothing to claim."""
        job = await self.claim(slot)
        if job is None:
            return False
        # There may be more: idle slots look now rather than at their next poll (a claim
        # that lost a race for locked rows comes back empty-handed and waits otherwise).
        self.services.notify_work()
        return await self._execute(job)

    async def claim(self, slot: int = 0) -> JobContext | None:
        owner = self.owner(slot)
        now = utcnow()
        lease_until = now + timedelta(seconds=LEASE_SECONDS)
        async with transaction(self.services.sessions) as session:
            due = await queue.candidates(
                session, owner, now, limit=CANDIDATES, blocked_code=self.hooks.blocked_code
            )
            for job_id, account_id in due:
                if account_id is not None and not await queue.lease_account(
                    session, account_id, owner, now, lease_until
                ):
                    continue
                taken = await queue.take(session, job_id, owner, now, lease_until)
                if taken is None:
                    # Another worker took the job first (SQLite reads without row locks):
                    # don't keep its account from everyone for a whole lease.
                    if account_id is not None:
                        await queue.release_account(session, account_id, owner)
                    continue
                return JobContext(
                    services=self.services,
                    job_id=job_id,
                    kind=taken.kind,
                    account_id=account_id,
                    payload=dict(taken.payload or {}),
                    attempts=taken.attempts,
                    max_attempts=taken.max_attempts,
                    worker_id=owner,
                )
        return None

    async def _execute(self, job: JobContext) -> Outcome:
        handler = self.handlers.get(job.kind)
        bound = log.bind(job_id=job.job_id, kind=job.kind, account_id=job.account_id)
        renew = asyncio.create_task(self._renew(job))
        started = time.monotonic()
        try:
            if handler is None:
                raise UnknownJob(f"no task runs jobs of kind {job.kind!r}")
            await handler(job)
        except asyncio.CancelledError:
            # Shutting down (or out of budget): hand the job back untouched so another
            # worker resumes it at once.
            bound.info("job.released", attempts=job.attempts - 1)
            await _settled(
                self._finish(job, Finish(JobStatus.PENDING, None, delay=0, count_attempt=False))
            )
            raise
        except Exception as exc:
            return await self._failed(job, exc, bound)
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew
        bound.info("job.done", seconds=round(time.monotonic() - started, 3))
        await _settled(self._finish(job, Finish(JobStatus.DONE, None)))
        return "done"

    async def _failed(self, job: JobContext, exc: Exception, bound: Any) -> Outcome:
        cause = root_cause(exc)
        if job.account_id is not None:
            async with self.services.sessions() as session:
                cause = await self.hooks.still_blocked(session, job.account_id, cause) or cause
        permanent = is_permanent(cause)
        error = self.hooks.describe(cause)[:2000]
        if isinstance(cause, AmoCRMBlocked) and job.account_id is not None:
            return await self._blocked(job, error, bound)
        if permanent or job.attempts >= job.max_attempts:
            bound.error("job.failed", attempts=job.attempts, error=error)
            if permanent and job.account_id is not None:
                await _settled(self._note(job.account_id, cause))
            await _settled(self._finish(job, Finish(JobStatus.FAILED, error)))
            return "failed"
        delay = self.retry_delay(job.attempts)
        retry_after = getattr(cause, "retry_after", None)
        if retry_after:
            delay = max(delay, float(retry_after))
        bound.warning("job.retry", attempts=job.attempts, delay=round(delay, 1), error=error)
        await _settled(self._finish(job, Finish(JobStatus.PENDING, error, delay=delay)))
        return "retry"

    async def _blocked(self, job: JobContext, error: str, bound: Any) -> Outcome:
        """Leave the account alone for `block_pause`; the job resumes after it. The attempt
        counts, so an account amoCRM never unblocks ends `failed` after `max_attempts`."""
        assert job.account_id is not None
        if job.attempts >= job.max_attempts:
            bound.error("job.failed", attempts=job.attempts, error=error)
            await _settled(self._finish(job, Finish(JobStatus.FAILED, error)))
            return "failed"
        until = utcnow() + timedelta(seconds=self.block_pause)
        bound.warning("job.blocked", attempts=job.attempts, pause=self.block_pause, error=error)
        async with transaction(self.services.sessions) as session:
            await self.hooks.set_blocked(session, job.account_id, error, until)
        await _settled(self._finish(job, Finish(JobStatus.PENDING, error, delay=self.block_pause)))
        return "retry"

    async def _note(self, account_id: int, cause: BaseException) -> None:
        async with transaction(self.services.sessions) as session:
            await self.hooks.note_failure(session, account_id, cause)

    async def _renew(self, job: JobContext) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            until = utcnow() + timedelta(seconds=LEASE_SECONDS)
            try:
                async with transaction(self.services.sessions) as session:
                    await queue.renew(session, job.job_id, job.account_id, job.worker_id, until)
                self._beat()
            except Exception:
                log.exception("worker.lease.renew_failed", job_id=job.job_id)

    def _beat(self) -> None:
        now = time.monotonic()
        if self.heartbeat is None or now - self._last_beat < 1.0:
            return
        self._last_beat = now
        try:
            self.heartbeat.touch()
        except OSError:
            log.warning("worker.heartbeat.failed", path=str(self.heartbeat))

    async def _finish(self, job: JobContext, outcome: Finish) -> None:
        async with transaction(self.services.sessions) as session:
            await queue.finish(session, job.job_id, job.worker_id, outcome)
            if job.account_id is not None:
                if outcome.status == JobStatus.DONE:
                    # The job ran to the end after the pause: amoCRM answers again.
                    await self.hooks.clear_blocked(session, job.account_id)
                await queue.release_account(session, job.account_id, job.worker_id)
        # Work of this account queued while the job ran can be claimed now, not next poll.
        self.services.notify_work()


async def _settled(outcome: Awaitable[None]) -> None:
    """Record a job's outcome even if the worker is cancelled meanwhile (shutdown): a half
    recorded outcome would leave the job `running` until its lease ran out."""
    task = asyncio.ensure_future(outcome)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


async def start_inline_worker(services: Services) -> Callable[[], Awaitable[None]]:
    """Start a worker in this process; returns the coroutine function that stops it."""
    worker = Worker(services)
    task = asyncio.create_task(worker.run())

    async def stop() -> None:
        worker.stop()
        # `run` gives running jobs `grace` seconds, then hands them back.
        await task

    return stop
