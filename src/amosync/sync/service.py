"""Starting full syncs and reading sync state (runs, synced and unsynced contacts)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from amosync.db.models import Contact, SyncRun
from amosync.errors import NotFound
from amosync.sync.tasks import FULL_SYNC, FullSyncJob

ACTIVE = ("queued", "running")


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
    run = SyncRun(account_id=account_id, status="queued", expected=expected or None)
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


async def get_run(session: AsyncSession, run_id: int) -> SyncRun:
    run = await session.get(SyncRun, run_id)
    if run is None:
        raise NotFound(f"sync run {run_id} does not exist", code="run_not_found")
    return run


async def contacts_page(
    session: AsyncSession,
    account_id: int,
    *,
    state: str,
    after: int | None,
    limit: int,
    search: str | None = None,
    reason: str | None = None,
) -> Sequence[Contact]:
    """One page of the account's contacts in `state`, by amoCRM id; unsynced ones can be
    narrowed to one reason (`""` is a contact with none recorded)."""
    query = (
        select(Contact)
        .where(Contact.account_id == account_id, Contact.state == state)
        .order_by(Contact.amocrm_id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(Contact.amocrm_id > after)
    if search:
        escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        # emails is JSON text on both backends; searching its text finds any address.
        query = query.where(
            or_(
                func.lower(cast(Contact.emails, String)).like(pattern, escape="\\"),
                func.lower(Contact.name).like(pattern, escape="\\"),
            )
        )
    if reason is not None:
        query = query.where(Contact.reason.is_(None) if reason == "" else Contact.reason == reason)
    return (await session.execute(query)).scalars().all()
