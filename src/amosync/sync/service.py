"""Starting full syncs and reading sync state (runs, synced and unsynced contacts)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

# Starting a run is the accounts' (connect, settings and install start one too); the sync
# domain runs it (`amosync.sync.jobs`).
from amosync.accounts.runs import ACTIVE as ACTIVE
from amosync.accounts.runs import active_run as active_run
from amosync.accounts.runs import start_full_sync as start_full_sync
from amosync.accounts.runs import start_run as start_run
from amosync.db.models import Contact, SyncRun
from amosync.errors import NotFound
from amosync.http.pagination import decode_cursor, next_page


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
    cursor: str | None,
    limit: int,
    search: str | None = None,
    reason: str | None = None,
) -> tuple[Sequence[Contact], str | None]:
    """The page of the account's contacts in `state` (by amoCRM id) a cursor of this API
    points to, and the cursor of the next page (None on the last); unsynced ones can be
    narrowed to one reason (`""` is a contact with none recorded)."""
    query = (
        select(Contact)
        .where(Contact.account_id == account_id, Contact.state == state)
        .order_by(Contact.amocrm_id)
        .limit(limit + 1)
    )
    after = decode_cursor(cursor)
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
    rows = (await session.execute(query)).scalars().all()
    return next_page(rows, limit, key=lambda row: row.amocrm_id)
