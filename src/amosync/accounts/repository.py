"""SQL about accounts and integrations."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Update, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from amosync.db.models import (
    Account,
    AccountStatus,
    Contact,
    Integration,
    PendingChange,
    PendingLead,
    RunStatus,
    SyncRun,
    utcnow,
)


async def get(
    session: AsyncSession, account_id: int, *, for_update: bool = False
) -> Account | None:
    query = select(Account).where(Account.id == account_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def page(session: AsyncSession, *, after: int | None, limit: int) -> Sequence[Account]:
    query = select(Account).order_by(Account.id).limit(limit)
    if after is not None:
        query = query.where(Account.id > after)
    return (await session.execute(query)).scalars().all()


async def contact_counts(
    session: AsyncSession, account_ids: Sequence[int]
) -> dict[int, dict[str, int]]:
    """Contacts per state of each account, and under "pending" its changes still waiting."""
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    if not account_ids:
        return counts
    rows = await session.execute(
        select(Contact.account_id, Contact.state, func.count())
        .where(Contact.account_id.in_(account_ids))
        .group_by(Contact.account_id, Contact.state)
    )
    for account_id, state, count in rows:
        counts[account_id][state] = count
    # What waits to be applied is the webhook changes not yet applied (contacts are stored
    # already synced or unsynced, never pending).
    waiting = await session.execute(
        select(PendingChange.account_id, func.count())
        .where(PendingChange.account_id.in_(account_ids))
        .group_by(PendingChange.account_id)
    )
    for account_id, count in waiting:
        counts[account_id]["pending"] = counts[account_id].get("pending", 0) + count
    return counts


async def last_runs(session: AsyncSession, account_ids: Sequence[int]) -> dict[int, SyncRun]:
    if not account_ids:
        return {}
    latest = (
        select(func.max(SyncRun.id))
        .where(SyncRun.account_id.in_(account_ids))
        .group_by(SyncRun.account_id)
    )
    runs = (await session.execute(select(SyncRun).where(SyncRun.id.in_(latest)))).scalars()
    return {run.account_id: run for run in runs}


async def integrations(session: AsyncSession, account_id: int) -> Sequence[Integration]:
    query = select(Integration).where(Integration.account_id == account_id).order_by(Integration.id)
    return (await session.execute(query)).scalars().all()


async def integration(
    session: AsyncSession, account_id: int, client_id: str | None
) -> Integration | None:
    """The integration with `client_id`, or the account's newest when none is named."""
    query = select(Integration).where(Integration.account_id == account_id)
    if client_id is not None:
        query = query.where(Integration.client_id == client_id)
    query = query.order_by(Integration.id.desc()).limit(1)
    return (await session.execute(query)).scalar_one_or_none()


async def delete_integrations(session: AsyncSession, account_id: int, client_id: str | None) -> int:
    query = delete(Integration).where(Integration.account_id == account_id)
    if client_id is not None:
        query = query.where(Integration.client_id == client_id)
    result = await session.execute(query)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def lock_refresh(
    session: AsyncSession,
    integration_id: int,
    version: int,
    owner: str,
    *,
    now: datetime,
    until: datetime,
) -> bool:
    """Take the refresh lock (a compare-and-swap on `token_version` and a lapsed lock)."""
    result = await session.execute(
        update(Integration)
        .where(
            Integration.id == integration_id,
            Integration.token_version == version,
            or_(Integration.refresh_lock_until.is_(None), Integration.refresh_lock_until < now),
        )
        .values(refresh_lock_owner=owner, refresh_lock_until=until)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _held_by(integration_id: int, owner: str) -> Update:
    """An update of the integration that applies only while `owner` holds its refresh lock."""
    return update(Integration).where(
        Integration.id == integration_id, Integration.refresh_lock_owner == owner
    )


async def unlock_refresh(session: AsyncSession, integration_id: int, owner: str) -> None:
    await session.execute(
        _held_by(integration_id, owner).values(refresh_lock_owner=None, refresh_lock_until=None)
    )


async def store_refreshed(
    session: AsyncSession,
    integration_id: int,
    owner: str,
    *,
    access_token_enc: str,
    refresh_token_enc: str,
    expires_at: datetime,
) -> None:
    """The new pair, `token_version + 1` and the lock released, in one statement."""
    await session.execute(
        _held_by(integration_id, owner).values(
            access_token_enc=access_token_enc,
            refresh_token_enc=refresh_token_enc,
            expires_at=expires_at,
            token_version=Integration.token_version + 1,
            refresh_lock_owner=None,
            refresh_lock_until=None,
        )
    )


async def mark_reauth(session: AsyncSession, account_id: int) -> None:
    """amoCRM revoked the tokens: the account needs a new install (unless disconnected)."""
    await session.execute(
        update(Account)
        .where(Account.id == account_id, Account.status != AccountStatus.DISCONNECTED)
        .values(status=AccountStatus.REAUTH_REQUIRED)
    )


async def set_webhook_registered(session: AsyncSession, account_id: int, registered: bool) -> None:
    await session.execute(
        update(Integration)
        .where(Integration.account_id == account_id)
        .values(webhook_registered=registered)
    )


async def forget(session: AsyncSession, account_id: int) -> None:
    """Disconnect's record: the account keeps its synced and unsynced contacts for the
    operator; its secrets, its leases, its waiting changes and its unfinished runs go."""
    await session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(
            status=AccountStatus.DISCONNECTED,
            unisender_key_enc=None,
            unisender_valid=False,
            lease_owner=None,
            lease_until=None,
        )
    )
    await session.execute(
        update(Integration)
        .where(Integration.account_id == account_id)
        .values(
            access_token_enc=None,
            refresh_token_enc=None,
            client_secret_enc=None,
            expires_at=None,
            webhook_registered=False,
        )
    )
    await drop_pending_changes(session, account_id)
    await session.execute(
        update(SyncRun)
        .where(
            SyncRun.account_id == account_id,
            SyncRun.status.in_((RunStatus.QUEUED, RunStatus.RUNNING)),
        )
        .values(status=RunStatus.FAILED, error="account disconnected", finished_at=utcnow())
    )


async def has_pending_changes(session: AsyncSession, account_id: int) -> bool:
    """Whether webhook changes of the account wait to be applied."""
    kept = await session.scalar(
        select(PendingChange.amocrm_id).where(PendingChange.account_id == account_id).limit(1)
    )
    return kept is not None


async def forget_hook(session: AsyncSession, account_id: int) -> None:
    """Unisender's hook is gone (or its key is): its token no longer opens our route."""
    await session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(unisender_hook_token_hash=None, unisender_hook_token_enc=None)
    )


async def drop_pending_changes(session: AsyncSession, account_id: int) -> None:
    """Delete every webhook change still pending for the account, its contacts' and its
    deals' (the account is gone or disconnected: nothing will apply them)."""
    await session.execute(delete(PendingChange).where(PendingChange.account_id == account_id))
    await session.execute(delete(PendingLead).where(PendingLead.account_id == account_id))
