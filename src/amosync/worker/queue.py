"""Queueing work. Jobs are rows, inserted in the transaction that records their reason, so a
rollback never leaves a job behind for data that does not exist."""

from __future__ import annotations

import functools
import random
from datetime import datetime, timedelta
from typing import Any, TypedDict, Unpack

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from amosync.db.engine import dialect_name, insert_for
from amosync.db.models import Job, utcnow

PENDING_ONLY = text("status = 'pending'")


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
        "status": "pending",
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
    query = select(func.count()).where(Job.status == "pending", Job.run_after <= now)
    return int((await session.execute(query)).scalar_one())


async def drop_pending(session: AsyncSession, account_id: int) -> None:
    """Forget an account's queued work (disconnect)."""
    await session.execute(
        update(Job)
        .where(Job.account_id == account_id, Job.status.in_(("pending", "failed")))
        .values(status="dropped", dedupe_key=None, updated_at=utcnow())
    )


async def retry(session: AsyncSession, job_id: int) -> bool:
    """Put a failed job back in the queue (the dashboard's retry button)."""
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "failed")
        .values(status="pending", attempts=0, run_after=utcnow(), updated_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
