"""Segment state in the database: the statuses of contacts' linked leads, which segment
lists contacts' addresses are in, and how many contacts each rule holds (SPEC §8)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Executable, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from amosync.accounts.settings import account_settings
from amosync.db.engine import among, dialect_name
from amosync.db.models import LeadLink, SegmentMember
from amosync.segments.engine import Segments, Status


def account_segments(stored: dict[str, Any] | None, list_id: int) -> Segments | None:
    """The account's rules and field mapping (from `accounts.settings`), or None when it
    has neither: then the sync does nothing per contact it did not do before segments."""
    segments = Segments.of(account_settings(stored), list_id)
    return segments if segments.active or segments.wants_columns else None


async def linked_statuses(
    session: AsyncSession, account_id: int, contact_ids: Sequence[int]
) -> dict[int, set[Status]]:
    """Contact → the (pipeline, status) pairs of its linked leads in wanted statuses."""
    return await _per_contact(
        session,
        contact_ids,
        lambda ids: select(LeadLink.contact_id, LeadLink.pipeline_id, LeadLink.status_id).where(
            LeadLink.account_id == account_id,
            among(LeadLink.contact_id, ids, dialect_name(session)),
        ),
    )


async def segment_lists(
    session: AsyncSession, account_id: int, contact_ids: Sequence[int]
) -> dict[int, list[int]]:
    """Contact → the segment lists amosync put its addresses in, in id order."""
    lists = await _per_contact(
        session,
        contact_ids,
        lambda ids: (
            select(SegmentMember.amocrm_id, SegmentMember.list_id)
            .where(SegmentMember.account_id == account_id, SegmentMember.amocrm_id.in_(ids))
            .distinct()
        ),
    )
    return {amocrm_id: sorted(ids) for amocrm_id, ids in lists.items()}


async def _per_contact(
    session: AsyncSession, contact_ids: Sequence[int], query: Callable[[list[int]], Executable]
) -> dict[int, set[Any]]:
    """Contact → the values the rows of `query(contact_ids)` give it, each once: a row is
    (contact, value) or (contact, *parts), the parts then a tuple. No contacts: no query."""
    if not contact_ids:
        return {}
    grouped: dict[int, set[Any]] = defaultdict(set)
    for contact_id, *value in await session.execute(query(list(contact_ids))):
        grouped[contact_id].add(value[0] if len(value) == 1 else tuple(value))
    return dict(grouped)


async def rule_counts(session: AsyncSession, account_id: int) -> dict[int, int]:
    """Segment list → how many contacts amosync put in it (for the dashboard)."""
    rows = await session.execute(
        select(SegmentMember.list_id, func.count(func.distinct(SegmentMember.amocrm_id)))
        .where(SegmentMember.account_id == account_id)
        .group_by(SegmentMember.list_id)
    )
    return {int(list_id): int(count) for list_id, count in rows.all()}
