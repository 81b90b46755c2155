"""The jobs table: queueing work, and the claims, leases and outcomes the worker records.

Jobs are rows, inserted in the transaction that records their reason, so a rollback never
leaves a job behind for data that does not exist. A claimed job holds a lease on itself and
on its account (`accounts.lease_owner`), so one account's jobs never run side by side; the
worker renews both while the job runs and drops them with its outcome. Every function here
works in the caller's transaction."""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypedDict, Unpack

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from amosync.db.engine import dialect_name, insert_for
from amosync.db.models import Account, AccountProblem, Job, JobStatus, utcnow

PENDING_ONLY = text(f"status = '{JobStatus.PENDING}'")


class JobOptions(TypedDict, total=False):
    """What a new job may set besides its kind and account (defaults in `job_values`)."""

    payload: dict[str, Any] | None
    dedupe_key: str | None
    delay: float
    max_attempts: int


async def enqueue(
    session: AsyncSession, kind: str, *, account_id: int | None, **options: Unpack[JobOptions]
) -> None:
    """Queue a job. With a `dedupe_key`, joins the pending job of that key if there is one."""
    values = job_values(kind, account_id=account_id, **options)
    deduplicated = values["dedupe_key"] is not None
    await session.execute(insert_job(dialect_name(session), deduplicated), values)


def job_values(
    kind: str,
    *,
    account_id: int | None,
    payload: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
    delay: float = 0.0,
    max_attempts: int = 8,
) -> dict[str, Any]:
    """The row of a new pending job (`enqueue` inserts it)."""
    now = utcnow()
    return {
        "kind": kind,
        "account_id": account_id,
        "payload": payload or {},
        "status": JobStatus.PENDING,
        "dedupe_key": dedupe_key,
        "attempts": 0,
        "max_attempts": max_attempts,
        "run_after": now + timedelta(seconds=delay),
        "created_at": now,
        "updated_at": now,
    }


@functools.cache
def insert_job(dialect: str, deduplicated: bool) -> Any:
    """The job insert, built once (every webhook batch queues a job: building it anew
    cost more than running it)."""
    statement = insert_for(dialect)(Job)
    if deduplicated:
        statement = statement.on_conflict_do_nothing(
            index_elements=["dedupe_key"], index_where=PENDING_ONLY
        )
    return statement


def backoff(attempt: int, *, base: float = 2.0, cap: float = 600.0) -> float:
    """Exponential backoff with full jitter, in seconds, for the n-th failed attempt."""
    return random.uniform(0, min(cap, base * 2 ** max(attempt - 1, 0))) + 0.5


async def counts(session: AsyncSession, account_id: int | None = None) -> dict[str, int]:
    query = select(Job.status, func.count()).group_by(Job.status)
    if account_id is not None:
        query = query.where(Job.account_id == account_id)
    return dict((await session.execute(query)).tuples().all())


async def due_count(session: AsyncSession, now: datetime | None = None) -> int:
    now = now or utcnow()
    query = select(func.count()).where(Job.status == JobStatus.PENDING, Job.run_after <= now)
    return int((await session.execute(query)).scalar_one())


async def drop_pending(session: AsyncSession, account_id: int) -> None:
    """Forget an account's queued work (disconnect)."""
    await session.execute(
        update(Job)
        .where(Job.account_id == account_id, Job.status.in_((JobStatus.PENDING, JobStatus.FAILED)))
        .values(status=JobStatus.DROPPED, dedupe_key=None, updated_at=utcnow())
    )


async def retry(session: AsyncSession, job_id: int) -> bool:
    """Put a failed job back in the queue (the dashboard's retry button)."""
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.FAILED)
        .values(status=JobStatus.PENDING, attempts=0, run_after=utcnow(), updated_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


class Taken(NamedTuple):
    """What a claim read of the job it took."""

    kind: str
    payload: dict[str, Any] | None
    attempts: int
    max_attempts: int


def _claimable(now: datetime) -> ColumnElement[bool]:
    return or_(
        and_(Job.status == JobStatus.PENDING, Job.run_after <= now),
        # A job whose worker died: its lease ran out.
        and_(Job.status == JobStatus.RUNNING, Job.lease_until < now),
    )


async def candidates(
    session: AsyncSession, owner: str, now: datetime, *, limit: int, blocked_code: str | None
) -> list[tuple[int, int | None]]:
    """The first due jobs (id, account) whose account no other worker holds and, with a
    `blocked_code`, whose account amoCRM has not blocked for now. On PostgreSQL the rows are
    locked, skipping those another worker's claim holds."""
    held_by_another = exists().where(
        Account.id == Job.account_id,
        Account.lease_owner.is_not(None),
        Account.lease_owner != owner,
        Account.lease_until >= now,
    )
    conditions = [_claimable(now), ~held_by_another]
    if blocked_code is not None:
        conditions.append(
            ~exists().where(
                AccountProblem.account_id == Job.account_id,
                AccountProblem.code == blocked_code,
                AccountProblem.until > now,
            )
        )
    query = select(Job.id, Job.account_id).where(*conditions).order_by(Job.run_after, Job.id)
    query = query.limit(limit)
    if dialect_name(session) == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Job)
    return [(job_id, account_id) for job_id, account_id in (await session.execute(query)).all()]


async def take(
    session: AsyncSession, job_id: int, owner: str, now: datetime, lease_until: datetime
) -> Taken | None:
    """Mark a due job running under `owner`'s lease and count the attempt; None when it is
    no longer claimable (another worker took it first)."""
    claimed = await session.execute(
        update(Job)
        .where(Job.id == job_id, _claimable(now))
        .values(
            status=JobStatus.RUNNING,
            lease_owner=owner,
            lease_until=lease_until,
            attempts=Job.attempts + 1,
            # A running job holds no key: new work of its kind queues beside it.
            dedupe_key=None,
            updated_at=now,
        )
        .returning(Job.kind, Job.payload, Job.attempts, Job.max_attempts)
    )
    row = claimed.first()
    return None if row is None else Taken(*row)


async def lease_account(
    session: AsyncSession, account_id: int, owner: str, now: datetime, until: datetime
) -> bool:
    """Hold the account for `owner` until `until`, unless another worker holds it."""
    result = await session.execute(
        update(Account)
        .where(
            Account.id == account_id,
            or_(
                Account.lease_owner.is_(None),
                Account.lease_until < now,
                Account.lease_owner == owner,
            ),
        )
        .values(lease_owner=owner, lease_until=until)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release_account(session: AsyncSession, account_id: int, owner: str) -> None:
    await session.execute(
        update(Account)
        .where(Account.id == account_id, Account.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    )


async def renew(
    session: AsyncSession, job_id: int, account_id: int | None, owner: str, until: datetime
) -> None:
    """Extend a running job's lease, and its account's, while `owner` still holds them."""
    await session.execute(
        update(Job).where(Job.id == job_id, Job.lease_owner == owner).values(lease_until=until)
    )
    if account_id is not None:
        await session.execute(
            update(Account)
            .where(Account.id == account_id, Account.lease_owner == owner)
            .values(lease_until=until)
        )


@dataclass(frozen=True)
class Finish:
    """A job's outcome as recorded: done, failed, or pending again after `delay` seconds
    (a job handed back uncounted keeps the error of its last real attempt)."""

    status: JobStatus
    error: str | None
    delay: float = 0.0
    count_attempt: bool = True


async def finish(session: AsyncSession, job_id: int, owner: str, outcome: Finish) -> None:
    """Record a job's outcome and drop its lease."""
    status, error = outcome.status, outcome.error
    values: dict[str, Any] = {
        "status": status,
        "lease_owner": None,
        "lease_until": None,
        "last_error": error,
        "updated_at": utcnow(),
    }
    if status == JobStatus.PENDING:
        values["run_after"] = utcnow() + timedelta(seconds=outcome.delay)
    if not outcome.count_attempt:
        values["attempts"] = Job.attempts - 1
    if error is None and status == JobStatus.PENDING:
        # Handed back: keep the error of the last real attempt.
        del values["last_error"]
    await session.execute(
        update(Job).where(Job.id == job_id, Job.lease_owner == owner).values(**values)
    )
