"""Webhook changes on the worker: coalesced per contact, applied in batches.

The inbox (`sync.webhooks`) stores the latest state of each contact in `pending_changes`
and queues one `changes` job per account. `apply_pending` runs on the worker: it takes the
account's pending changes a few hundred at a time, imports and excludes them through the
same `Applier` as the full sync, and deletes exactly the versions it applied, so a change
that arrives meanwhile is never lost.

The webhook's tags and other custom fields travel with the change (`pending_changes.data`)
for the segment rules and the field mapping; its deals are kept as pending leads
(`sync.leads`), applied by the same job after the contacts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from amosync.accounts.repository import drop_pending_changes
from amosync.accounts.tokens import amocrm_client
from amosync.accounts.unisender import account_client, resolve_list
from amosync.amocrm.webhooks import ContactChange
from amosync.db.engine import transaction
from amosync.db.models import Account, AccountStatus, Contact, ListedEmail, PendingChange
from amosync.errors import (
    AccountGone,
    AuthorizationRevoked,
    InvalidApiKey,
    PermanentUpstreamError,
    TransientUpstreamError,
)
from amosync.runtime.services import Services
from amosync.segments.engine import Segments, Status
from amosync.segments.members import account_segments, linked_statuses
from amosync.sync.apply import (
    Applier,
    ContactState,
    RefusedThroughout,
    batches,
    is_row_error,
)
from amosync.sync.leads import apply_pending_leads
from amosync.sync.mapping import classify
from amosync.sync.repository import changes_failed, forget_changes, store_list
from amosync.sync.restore import read_restored
from amosync.unisender.client import UnisenderClient
from amosync.unisender.models import ImportRow

log = structlog.get_logger()

TAKE = 400


def state_from_change(
    change: ContactChange | PendingChange,
    segments: Segments | None = None,
    statuses: Mapping[int, set[Status]] | None = None,
) -> ContactState:
    """The contact as the change leaves it; with `segments`, also its segment lists (by
    the webhook's tags and the `statuses` of its linked leads) and its extra columns."""
    updated_at = (
        change.amocrm_updated_at if isinstance(change, PendingChange) else change.updated_at
    )
    state = ContactState.of(change.amocrm_id, change.name, classify(change.emails), updated_at)
    if segments is not None:
        tags, fields = _extra(change)
        linked = statuses.get(change.amocrm_id) if statuses else None
        state.choose_segments(segments, tags, linked, fields)
    return state


def _extra(change: ContactChange | PendingChange) -> tuple[list[str], list[dict[str, Any]]]:
    """The change's tag names and other custom fields (stored in `pending_changes.data`)."""
    if isinstance(change, ContactChange):
        return change.tags, change.fields
    data = change.data if isinstance(change.data, dict) else {}
    tags = data.get("tags")
    fields = data.get("fields")
    return (
        [tag for tag in tags if isinstance(tag, str)] if isinstance(tags, list) else [],
        [item for item in fields if isinstance(item, dict)] if isinstance(fields, list) else [],
    )


# A change whose batch failed this many times (transiently) is tried alone from then on…
SUSPECT_AFTER = 2
# …and set aside after this many failures, once importContacts is seen working for others.
GIVE_UP_AFTER = 5
SET_ASIDE = "sync_failed"
# More changes than this failing for what they hold in one run is no longer about them (a
# refusal of everything, a broken database): the run stops with the error instead.
MAX_SET_ASIDE = 20


async def apply_pending(services: Services, account_id: int, *, budget: float = 30.0) -> int:
    """Apply the account's pending changes; returns how many contacts were applied.

    A change that fails for good is set aside at once (its contact shows as unsynced with
    the error), one that keeps failing after a few attempts too, so no single contact holds
    back the account's other changes; see `_Pending`.
    """
    deadline = time.monotonic() + budget
    async with transaction(services.sessions) as session:
        account = await session.get(Account, account_id)
        if account is None or account.status == AccountStatus.DISCONNECTED:
            await drop_pending_changes(session, account_id)
            return 0
        if account.unisender_key_enc is None:
            return 0  # kept until a key is connected; the first full sync covers them anyway
        unisender = account_client(services, account)
        list_id = account.list_id
        stored_settings = account.settings
    if list_id is None:
        list_id = await resolve_list(unisender, None, services.settings.unisender_list_title)
        async with transaction(services.sessions) as session:
            await store_list(session, account_id, list_id)
    segments = account_segments(stored_settings, list_id)
    applier = Applier(account_id, list_id, unisender, services.sessions, segments)
    applied = await _Pending(services, account_id, applier, unisender).run(deadline)
    # Deals after contacts: a contact a deal links is then stored with its latest state.
    amocrm = None
    if segments is not None and segments.wants_leads:
        amocrm = await amocrm_client(services, account_id)
    await apply_pending_leads(services, account_id, applier, amocrm, deadline=deadline)
    return applied


@dataclass(eq=False)
class _Pending:
    """One run over an account's pending changes.

    Changes are taken fewest failures first, so fresh ones never wait behind failing ones.
    A batch that fails:
    - for the account as a whole (key refused, account disconnected): the run stops;
    - transiently (5xx, timeouts, `retry_later`): its changes count a failure and the run
      stops, so the job is retried with backoff (an outage is nobody's fault);
    - for what a change holds (any other error): halved until the change stands alone,
      which is set aside at once.
    A change that failed `SUSPECT_AFTER` times is tried alone; failing again after
    `GIVE_UP_AFTER` failures while importContacts works for other contacts, it is set
    aside; during an outage nothing is set aside, the job backs off.
    """

    services: Services
    account_id: int
    applier: Applier
    unisender: UnisenderClient
    applied: int = 0
    imported: bool = False  # a batch went through in this run
    set_aside_count: int = 0
    skipped: set[int] = field(default_factory=set)  # suspects that failed again in this run
    failure: Exception | None = None

    async def run(self, deadline: float) -> int:
        while time.monotonic() < deadline:
            changes, known = await self._take()
            if not changes:
                break
            # A restore that came without the contact's fields is read from amoCRM first.
            await read_restored(self.services, self.account_id, changes)
            fresh: list[PendingChange] = []
            stale: list[PendingChange] = []
            for change in changes:
                (stale if _stale(change, known.get(change.amocrm_id)) else fresh).append(change)
            if stale:
                # Late duplicates: nothing to apply, only to forget.
                async with transaction(self.services.sessions) as session:
                    await forget_changes(session, self.account_id, stale)
            regular = [c for c in fresh if c.attempts < SUSPECT_AFTER]
            for group in _groups(regular):
                await self._apply(group)
            for change in fresh:
                if change.attempts >= SUSPECT_AFTER:
                    await self._apply([change])
            log.info(
                "webhook.changes.applied",
                account_id=self.account_id,
                changes=len(fresh),
                skipped=len(changes) - len(fresh),
            )
        if self.failure is not None:
            # Suspects still failing: the job is retried later, with backoff.
            raise self.failure
        return self.applied

    async def _take(self) -> tuple[list[PendingChange], dict[int, int | None]]:
        async with self.services.sessions() as session:
            query = (
                select(PendingChange)
                .where(PendingChange.account_id == self.account_id)
                .order_by(
                    PendingChange.attempts, PendingChange.received_at, PendingChange.amocrm_id
                )
                .limit(TAKE)
            )
            if self.skipped:
                query = query.where(PendingChange.amocrm_id.not_in(self.skipped))
            changes = list((await session.execute(query)).scalars())
            if not changes:
                return [], {}
            known = dict(
                (
                    await session.execute(
                        select(Contact.amocrm_id, Contact.amocrm_updated_at).where(
                            Contact.account_id == self.account_id,
                            Contact.amocrm_id.in_([c.amocrm_id for c in changes]),
                        )
                    )
                ).all()
            )
        return changes, known

    async def _apply(self, group: list[PendingChange]) -> None:
        try:
            async with transaction(self.services.sessions) as session:
                upserts = await self._states(session, group)
                deletes = [c.amocrm_id for c in group if c.action == "delete"]
                if upserts:
                    await self.applier.apply(session, upserts)
                if deletes:
                    await self.applier.remove(session, deletes)
                # Delete exactly the versions applied: a newer state that arrived meanwhile
                # stays.
                await forget_changes(session, self.account_id, group)
            self.imported = self.imported or any(state.valid for state in upserts)
        except Exception as exc:
            blame = _blame(exc)
            if blame == "account":
                raise
            if blame == "change":
                if len(group) > 1:
                    middle = len(group) // 2
                    await self._apply(group[:middle])
                    await self._apply(group[middle:])
                else:
                    await self._set_aside(group[0], exc)
                return
            await self._failed(group)
            if len(group) > 1 or group[0].attempts < SUSPECT_AFTER:
                raise
            change = group[0]
            if change.attempts + 1 >= GIVE_UP_AFTER and await self._imports_work(change):
                await self._set_aside(change, exc, attempts=change.attempts + 1)
                return
            self.skipped.add(change.amocrm_id)
            self.failure = exc
            return
        self.applied += len(group)

    async def _states(
        self, session: AsyncSession, group: list[PendingChange]
    ) -> list[ContactState]:
        changes = [c for c in group if c.action == "upsert"]
        segments = self.applier.segments
        statuses = None
        if segments is not None and segments.wants_leads:
            ids = [c.amocrm_id for c in changes]
            statuses = await linked_statuses(session, self.account_id, ids)
        return [state_from_change(c, segments, statuses) for c in changes]

    async def _failed(self, group: list[PendingChange]) -> None:
        async with transaction(self.services.sessions) as session:
            await changes_failed(session, self.account_id, group)

    async def _imports_work(self, change: PendingChange) -> bool:
        """Whether importContacts works for the account's other contacts: then the calls
        holding this change fail because of it, not because Unisender is down.

        Known when another batch went through in this run; otherwise asked with a call
        that changes nothing: an address already in the list, again, with its name."""
        if self.imported:
            return True
        async with self.services.sessions() as session:
            canary = (
                await session.execute(
                    select(ListedEmail.email, Contact.name)
                    .join(
                        Contact,
                        (Contact.account_id == ListedEmail.account_id)
                        & (Contact.amocrm_id == ListedEmail.amocrm_id),
                    )
                    .where(
                        ListedEmail.account_id == self.account_id,
                        ListedEmail.amocrm_id != change.amocrm_id,
                    )
                    .limit(1)
                )
            ).first()
        if canary is None:
            return False  # nothing to compare with: keep retrying
        email, name = canary
        try:
            await self.unisender.import_contacts(
                [ImportRow(email=email, name=name or "")], list_id=self.applier.list_id
            )
        except Exception:
            return False
        return True

    async def _set_aside(
        self, change: PendingChange, exc: Exception, *, attempts: int | None = None
    ) -> None:
        """The contact shows as unsynced with the error; its change is dropped. Its next
        state (a webhook) or the next full sync tries it afresh."""
        self.set_aside_count += 1
        if self.set_aside_count > MAX_SET_ASIDE:
            raise exc
        if isinstance(exc, PermanentUpstreamError) and exc.api == "unisender" and exc.code:
            reason = f"unisender:{exc.code}"
        else:
            reason = SET_ASIDE
        detail = f"{type(exc).__name__}: {exc}"
        if attempts is not None:
            detail += f" (failed {attempts} times)"
        log.warning(
            "webhook.change.set_aside",
            account_id=self.account_id,
            amocrm_id=change.amocrm_id,
            reason=reason,
            error=detail,
        )
        state = state_from_change(change, self.applier.segments)
        async with transaction(self.services.sessions) as session:
            await self.applier.set_aside(session, state, reason, detail[:2000])
            await forget_changes(session, self.account_id, [change])


def _groups(changes: list[PendingChange]) -> list[list[PendingChange]]:
    """Upserts in batches of ≤ 500 rows (a contact with more makes a batch of its own),
    then the deletes together."""
    by_id = {c.amocrm_id: c for c in changes}
    upserts = [state_from_change(c) for c in changes if c.action == "upsert"]
    groups = [[by_id[state.amocrm_id] for state in batch] for batch in batches(upserts)]
    deletes = [c for c in changes if c.action == "delete"]
    if deletes:
        groups.append(deletes)
    return groups


def _blame(exc: Exception) -> str:
    """Whose failure: "account" (stop the account's work), "transient" (retry later) or
    "change" (what the changes hold: find the one and set it aside)."""
    if isinstance(exc, (InvalidApiKey, AuthorizationRevoked, AccountGone, RefusedThroughout)):
        return "account"
    if isinstance(exc, PermanentUpstreamError):
        return "change" if is_row_error(exc) or exc.code is None else "account"
    if isinstance(exc, (TransientUpstreamError, OperationalError, InterfaceError, OSError)):
        return "transient"
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return "transient"
    return "change"


def _stale(change: PendingChange, stored_updated_at: int | None) -> bool:
    """A change older than what the contacts table already holds (a late duplicate)."""
    return (
        change.amocrm_updated_at is not None
        and stored_updated_at is not None
        and change.amocrm_updated_at < stored_updated_at
    )
