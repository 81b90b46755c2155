"""The few reads only the dashboard needs (the rest comes from the domain repositories)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from amosync.db.models import Job, WebhookEvent


async def recent_webhook_events(
    session: AsyncSession, account_id: int, *, limit: int = 20
) -> Sequence[WebhookEvent]:
    query = (
        select(WebhookEvent)
        .where(WebhookEvent.account_id == account_id)
        .order_by(WebhookEvent.received_at.desc(), WebhookEvent.id.desc())
        .limit(limit)
    )
    return (await session.execute(query)).scalars().all()


async def failed_jobs(
    session: AsyncSession, *, account_id: int | None = None, limit: int = 20
) -> Sequence[Job]:
    """The newest failed jobs, of one account or of all (including jobs of no account yet,
    such as an install whose code exchange failed)."""
    query = select(Job).where(Job.status == "failed")
    if account_id is not None:
        query = query.where(Job.account_id == account_id)
    query = query.order_by(Job.updated_at.desc(), Job.id.desc()).limit(limit)
    return (await session.execute(query)).scalars().all()


async def job(session: AsyncSession, job_id: int) -> Job | None:
    return await session.get(Job, job_id)
