"""SQL of the consent domain: Unisender's unsubscribe events and what was written back for
each (`consent_events`, `consent_writes`), and who holds an address (`listed_emails`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from amosync.db.engine import dialect_name, insert_for
from amosync.db.models import (
    ConsentEvent,
    ConsentStatus,
    ConsentWrite,
    Integration,
    ListedEmail,
    utcnow,
)

Written = dict[tuple[int, int], ConsentWrite]  # (event id, contact id) -> what was written


async def base_url(session: AsyncSession, account_id: int) -> str | None:
    """The amoCRM address the account was installed from (its host picks the language)."""
    return await session.scalar(
        select(Integration.base_url).where(Integration.account_id == account_id).limit(1)
    )


async def pending_events(session: AsyncSession, account_id: int, limit: int) -> list[ConsentEvent]:
    """The account's events still to write back, oldest first."""
    query = (
        select(ConsentEvent)
        .where(ConsentEvent.account_id == account_id, ConsentEvent.status == ConsentStatus.PENDING)
        .order_by(ConsentEvent.id)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def holders(
    session: AsyncSession, account_id: int, emails: Iterable[str]
) -> dict[str, list[int]]:
    """The contacts listed with each address, by id."""
    found: dict[str, list[int]] = {}
    for email, amocrm_id in await session.execute(
        select(ListedEmail.email, ListedEmail.amocrm_id)
        .where(ListedEmail.account_id == account_id, ListedEmail.email.in_(set(emails)))
        .order_by(ListedEmail.amocrm_id)
    ):
        found.setdefault(email, []).append(amocrm_id)
    return found


async def written(session: AsyncSession, event_ids: Sequence[int]) -> Written:
    """What earlier attempts wrote for these events."""
    query = select(ConsentWrite).where(ConsentWrite.event_id.in_(event_ids))
    return {(row.event_id, row.amocrm_id): row for row in (await session.execute(query)).scalars()}


async def record_written(
    session: AsyncSession, pairs: Sequence[tuple[int, int]], *, tagged: bool, noted: bool
) -> None:
    """Remember that (event, contact) pairs were tagged, or noted."""
    insert = insert_for(dialect_name(session))
    values = [
        {"event_id": event_id, "amocrm_id": amocrm_id, "tagged": tagged, "noted": noted}
        for event_id, amocrm_id in pairs
    ]
    statement = insert(ConsentWrite).values(values)
    column = "tagged" if tagged else "noted"
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["event_id", "amocrm_id"],
            set_={column: getattr(statement.excluded, column)},
        )
    )


async def finish_events(
    session: AsyncSession, outcomes: Sequence[tuple[ConsentEvent, ConsentStatus, list[str]]]
) -> None:
    """Each event's outcome and the contacts it was written to."""
    now = utcnow()
    for event, status, contact_ids in outcomes:
        await session.execute(
            update(ConsentEvent)
            .where(ConsentEvent.id == event.id)
            .values(status=status, contact_ids=contact_ids, processed_at=now)
        )
