"""The sync domain's SQL: the pending changes handled or dropped, the account's list once
resolved, and what a full sync counts, sweeps and marks done."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from amosync.db.models import Account, Contact, PendingChange, PendingLead, utcnow


async def forget_changes(
    session: AsyncSession, account_id: int, changes: Iterable[PendingChange]
) -> None:
    """Delete exactly the contact changes handled: a newer state of the same contact,
    stored by a webhook meanwhile, stays pending."""
    await session.execute(delete(PendingChange).where(_changes(account_id, changes)))


async def forget_leads(
    session: AsyncSession, account_id: int, leads: Iterable[PendingLead]
) -> None:
    """Delete exactly the deal changes handled (a newer one stays pending)."""
    await session.execute(delete(PendingLead).where(_leads(account_id, leads)))


async def changes_failed(
    session: AsyncSession, account_id: int, changes: Iterable[PendingChange]
) -> None:
    """One more failed attempt for each contact change handled (a newer state has none)."""
    await _failed_once_more(session, PendingChange, _changes(account_id, changes))


async def leads_failed(
    session: AsyncSession, account_id: int, leads: Iterable[PendingLead]
) -> None:
    """One more failed attempt for each deal change handled."""
    await _failed_once_more(session, PendingLead, _leads(account_id, leads))


async def _failed_once_more(
    session: AsyncSession,
    model: type[PendingChange] | type[PendingLead],
    handled: ColumnElement[bool],
) -> None:
    await session.execute(update(model).where(handled).values(attempts=model.attempts + 1))


def _changes(account_id: int, changes: Iterable[PendingChange]) -> ColumnElement[bool]:
    """These versions of the account's pending contact changes, by (contact id, version)."""
    versions = [(change.amocrm_id, change.version) for change in changes]
    return and_(
        PendingChange.account_id == account_id,
        tuple_(PendingChange.amocrm_id, PendingChange.version).in_(versions),
    )


def _leads(account_id: int, leads: Iterable[PendingLead]) -> ColumnElement[bool]:
    """These versions of the account's pending deal changes, by (deal id, version)."""
    versions = [(lead.lead_id, lead.version) for lead in leads]
    return and_(
        PendingLead.account_id == account_id,
        tuple_(PendingLead.lead_id, PendingLead.version).in_(versions),
    )


async def store_list(session: AsyncSession, account_id: int, list_id: int) -> None:
    """Keep the Unisender list resolved for an account that had none stored."""
    await session.execute(update(Account).where(Account.id == account_id).values(list_id=list_id))


async def seen_counts(session: AsyncSession, account_id: int, run_id: int) -> dict[str, int]:
    """The contacts a run stored, by state (`synced`, `unsynced`)."""
    rows = await session.execute(
        select(Contact.state, func.count())
        .where(Contact.account_id == account_id, Contact.seen_run_id == run_id)
        .group_by(Contact.state)
    )
    return dict(rows.tuples().all())


async def unseen_contacts(
    session: AsyncSession, account_id: int, run_id: int, before: datetime | None, limit: int
) -> Sequence[int]:
    """Up to `limit` contacts a run never saw and nothing updated since `before` (when the
    run began): the ones amoCRM no longer has."""
    return (
        (
            await session.execute(
                select(Contact.amocrm_id)
                .where(
                    Contact.account_id == account_id,
                    Contact.seen_run_id.is_distinct_from(run_id),
                    Contact.updated_at < before,
                )
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )


async def mark_synced(session: AsyncSession, account_id: int) -> None:
    """A full sync went through: the Unisender key worked, and the account is reconciled."""
    await session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(unisender_valid=True, unisender_checked_at=utcnow(), reconciled_at=utcnow())
    )
