"""Webhook changes: stored durably on arrival, coalesced per contact, applied in batches.

`record` runs inside the webhook request: it keeps only the latest state of each contact
(by amoCRM's modification time, so a late duplicate never overwrites a newer state) in
`pending_changes`, and queues one `changes` job per account in the same transaction.
`apply_pending` runs on the worker: it takes the account's pending changes a few hundred at
a time, imports and excludes them through the same `Applier` as the full sync, and deletes
exactly the versions it applied, so a change that arrives meanwhile is never lost.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from sqlalchemy import delete, or_, select, tuple_, update

from amosync.accounts.unisender import account_client, resolve_list
from amosync.amocrm.webhooks import ContactChange, WebhookPayload
from amosync.db.engine import transaction
from amosync.db.models import Account, Contact, PendingChange, WebhookEvent, utcnow
from amosync.state import Services
from amosync.sync.apply import Applier, ContactState, batches, insert_for
from amosync.sync.mapping import classify, unsynced_reason
from amosync.worker.queue import enqueue

log = structlog.get_logger()

TAKE = 400


def state_from_change(change: ContactChange | PendingChange) -> ContactState:
    emails = classify(change.emails)
    return ContactState(
        amocrm_id=change.amocrm_id,
        name=change.name,
        emails=[*emails.valid, *emails.invalid],
        valid=emails.valid,
        reason=unsynced_reason(emails),
        updated_at=change.amocrm_updated_at
        if isinstance(change, PendingChange)
        else change.updated_at,
    )


async def record(session: Any, account_id: int, payload: WebhookPayload) -> dict[str, int]:
    """Store a webhook's contact changes and queue their application. Returns counts."""
    latest: dict[int, ContactChange] = {}
    counts = {"added": 0, "updated": 0, "deleted": 0}
    for change in payload.changes:
        key = {"add": "added", "restore": "added", "update": "updated"}.get(
            change.raw_action, "deleted"
        )
        counts[key] += 1
        previous = latest.get(change.amocrm_id)
        # Later in the request wins unless it is older by amoCRM's clock (a delete carries
        # no time: it wins).
        if (
            previous is None
            or change.updated_at is None
            or (previous.updated_at or 0) <= change.updated_at
        ):
            latest[change.amocrm_id] = change
    if not latest:
        return counts
    now = utcnow()
    rows = [
        {
            "account_id": account_id,
            "amocrm_id": change.amocrm_id,
            "action": change.action,
            "name": change.name,
            "emails": change.emails,
            "amocrm_updated_at": change.updated_at,
            "version": 1,
            "received_at": now,
        }
        for change in latest.values()
    ]
    insert = insert_for(session)
    statement = insert(PendingChange).values(rows)
    new = statement.excluded
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["account_id", "amocrm_id"],
            set_={
                "action": new.action,
                "name": new.name,
                "emails": new.emails,
                "amocrm_updated_at": new.amocrm_updated_at,
                "version": PendingChange.version + 1,
                "received_at": new.received_at,
            },
            # The latest state wins: an older delivery arriving late changes nothing.
            where=or_(
                PendingChange.amocrm_updated_at.is_(None),
                new.amocrm_updated_at.is_(None),
                new.amocrm_updated_at >= PendingChange.amocrm_updated_at,
            ),
        )
    )
    session.add(
        WebhookEvent(
            account_id=account_id,
            received_at=now,
            contact_ids=[str(i) for i in list(latest)[:20]],
            **counts,
        )
    )
    await enqueue(session, "changes", account_id=account_id, dedupe_key=f"changes:{account_id}")
    return counts


async def apply_pending(services: Services, account_id: int, *, budget: float = 30.0) -> int:
    """Apply the account's pending changes; returns how many contacts were applied."""
    deadline = time.monotonic() + budget
    async with transaction(services.sessions) as session:
        account = await session.get(Account, account_id)
        if account is None or account.status == "disconnected":
            await session.execute(
                delete(PendingChange).where(PendingChange.account_id == account_id)
            )
            return 0
        if account.unisender_key_enc is None:
            return 0  # kept until a key is connected; the first full sync covers them anyway
        unisender = account_client(services, account)
        list_id = account.list_id
    if list_id is None:
        list_id = await resolve_list(unisender, None, services.settings.unisender_list_title)
        async with transaction(services.sessions) as session:
            await session.execute(
                update(Account).where(Account.id == account_id).values(list_id=list_id)
            )
    applier = Applier(account_id, list_id, unisender, services.sessions)
    applied = 0
    while time.monotonic() < deadline:
        async with services.sessions() as session:
            changes = list(
                (
                    await session.execute(
                        select(PendingChange)
                        .where(PendingChange.account_id == account_id)
                        .order_by(PendingChange.received_at, PendingChange.amocrm_id)
                        .limit(TAKE)
                    )
                ).scalars()
            )
            known = dict(
                (
                    await session.execute(
                        select(Contact.amocrm_id, Contact.amocrm_updated_at).where(
                            Contact.account_id == account_id,
                            Contact.amocrm_id.in_([c.amocrm_id for c in changes]),
                        )
                    )
                ).all()
            )
        if not changes:
            break
        fresh = [c for c in changes if not _stale(c, known.get(c.amocrm_id))]
        upserts = [state_from_change(c) for c in fresh if c.action == "upsert"]
        deletes = [c.amocrm_id for c in fresh if c.action == "delete"]
        for batch in batches(upserts):
            async with transaction(services.sessions) as session:
                await applier.apply(session, batch)
        async with transaction(services.sessions) as session:
            if deletes:
                await applier.remove(session, deletes)
            # Delete exactly the versions applied: a newer state that arrived meanwhile stays.
            await session.execute(
                delete(PendingChange).where(
                    PendingChange.account_id == account_id,
                    tuple_(PendingChange.amocrm_id, PendingChange.version).in_(
                        [(c.amocrm_id, c.version) for c in changes]
                    ),
                )
            )
        applied += len(fresh)
        log.info(
            "webhook.changes.applied",
            account_id=account_id,
            upserts=len(upserts),
            deletes=len(deletes),
            skipped=len(changes) - len(fresh),
        )
    return applied


def _stale(change: PendingChange, stored_updated_at: int | None) -> bool:
    """A change older than what the contacts table already holds (a late duplicate)."""
    return (
        change.amocrm_updated_at is not None
        and stored_updated_at is not None
        and change.amocrm_updated_at < stored_updated_at
    )
