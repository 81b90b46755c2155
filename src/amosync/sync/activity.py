"""What the service applied, counted per account and clock hour (the dashboard's chart)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from amosync.db.engine import dialect_name, insert_for
from amosync.db.models import AppliedHour, utcnow


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


async def count_applied(
    session: AsyncSession,
    account_id: int,
    *,
    synced: int = 0,
    unsynced: int = 0,
    deleted: int = 0,
    at: datetime | None = None,
) -> None:
    """Add to this hour's counts, in the caller's transaction (so they commit with the
    changes they count)."""
    if not (synced or unsynced or deleted):
        return
    table = AppliedHour.__table__
    statement = insert_for(dialect_name(session))(table).values(
        account_id=account_id,
        hour=hour_of(at or utcnow()),
        synced=synced,
        unsynced=unsynced,
        deleted=deleted,
    )
    statement = statement.on_conflict_do_update(
        index_elements=["account_id", "hour"],
        set_={
            "synced": table.c.synced + statement.excluded.synced,
            "unsynced": table.c.unsynced + statement.excluded.unsynced,
            "deleted": table.c.deleted + statement.excluded.deleted,
        },
    )
    await session.execute(statement)


async def recent_hours(
    session: AsyncSession, account_id: int, *, hours: int = 24, now: datetime | None = None
) -> Sequence[AppliedHour]:
    """The account's counted hours of the last `hours` (the current one included)."""
    since = hour_of(now or utcnow()) - timedelta(hours=hours - 1)
    query = (
        select(AppliedHour)
        .where(AppliedHour.account_id == account_id, AppliedHour.hour >= since)
        .order_by(AppliedHour.hour)
    )
    return (await session.execute(query)).scalars().all()
