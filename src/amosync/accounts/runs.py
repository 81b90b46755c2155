"""An account's full sync runs: starting one (or joining the active one) and finding it.

Connecting a key, saving settings and `POST /sync` all start a run, so starting one is kept
here, below every domain that does; the `full_sync` job it queues is run by
`amosync.sync.jobs` (re-exported by `amosync.sync.service`).
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from amosync.accounts.tasks import FULL_SYNC, FullSyncJob
from amosync.db.models import Contact, RunStatus, SyncRun

ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)


async def active_run(session: AsyncSession, account_id: int) -> SyncRun | None:
    query = select(SyncRun).where(SyncRun.account_id == account_id, SyncRun.status.in_(ACTIVE))
    return (await session.execute(query)).scalar_one_or_none()


async def start_full_sync(session: AsyncSession, account_id: int) -> tuple[SyncRun, bool]:
    """Queue a full sync, or return the active one. Returns (run, created)."""
    return await start_run(session, account_id)


async def start_run(
    session: AsyncSession, account_id: int, *, queue: bool = True
) -> tuple[SyncRun, bool]:
    """A new run (queued with its job unless `queue` is false: the caller's job runs it), or
    the active one. Returns (run, created)."""
    existing = await active_run(session, account_id)
    if existing is not None:
        return existing, False
    expected = await session.scalar(
        select(func.count()).select_from(Contact).where(Contact.account_id == account_id)
    )
    run = SyncRun(account_id=account_id, status=RunStatus.QUEUED, expected=expected or None)
    try:
        # A savepoint: a concurrent start wins the partial unique index, we read its run.
        async with session.begin_nested():
            session.add(run)
            await session.flush()
    except IntegrityError:
        existing = await active_run(session, account_id)
        if existing is None:
            raise
        return existing, False
    if not queue:
        return run, True
    await FULL_SYNC.enqueue(session, FullSyncJob(account_id=account_id, run_id=run.id))
    return run, True
