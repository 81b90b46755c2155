"""The dashboard's SQL: the few reads only its pages need (the rest comes from the domain
repositories)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from amosync.db.models import ConsentEvent, Contact, Job, JobStatus, SyncRun, WebhookEvent

# The account's event logs the page lists, newest first.
Event = TypeVar("Event", WebhookEvent, ConsentEvent)


async def _recent(
    session: AsyncSession, event: type[Event], account_id: int, limit: int
) -> Sequence[Event]:
    query = (
        select(event)
        .where(event.account_id == account_id)
        .order_by(event.received_at.desc(), event.id.desc())
        .limit(limit)
    )
    return (await session.execute(query)).scalars().all()


async def recent_webhook_events(
    session: AsyncSession, account_id: int, *, limit: int = 20
) -> Sequence[WebhookEvent]:
    return await _recent(session, WebhookEvent, account_id, limit)


async def recent_consent_events(
    session: AsyncSession, account_id: int, *, limit: int = 20
) -> Sequence[ConsentEvent]:
    """The account's latest unsubscribes from Unisender and what was written back."""
    return await _recent(session, ConsentEvent, account_id, limit)


async def failed_jobs(
    session: AsyncSession, *, account_id: int | None = None, limit: int = 20
) -> Sequence[Job]:
    """The newest failed jobs, of one account or of all (including jobs of no account yet,
    such as an install whose code exchange failed)."""
    query = select(Job).where(Job.status == JobStatus.FAILED)
    if account_id is not None:
        query = query.where(Job.account_id == account_id)
    query = query.order_by(Job.updated_at.desc(), Job.id.desc()).limit(limit)
    return (await session.execute(query)).scalars().all()


async def job(session: AsyncSession, job_id: int) -> Job | None:
    return await session.get(Job, job_id)


async def runs(
    session: AsyncSession, account_id: int, *, before: int | None = None, limit: int = 20
) -> Sequence[SyncRun]:
    """The account's full syncs, newest first."""
    query = select(SyncRun).where(SyncRun.account_id == account_id)
    if before is not None:
        query = query.where(SyncRun.id < before)
    query = query.order_by(SyncRun.id.desc()).limit(limit)
    return (await session.execute(query)).scalars().all()


async def unsynced_reasons(session: AsyncSession, account_id: int) -> list[tuple[str, int]]:
    """Each reason unsynced contacts of the account have, with how many, commonest first."""
    count = func.count().label("n")
    query = (
        select(Contact.reason, count)
        .where(Contact.account_id == account_id, Contact.state == "unsynced")
        .group_by(Contact.reason)
        .order_by(count.desc(), Contact.reason)
    )
    return [(reason or "", int(n)) for reason, n in await session.execute(query)]
