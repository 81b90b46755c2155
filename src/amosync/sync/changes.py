"""Webhook changes: stored durably on arrival, coalesced per contact, applied in batches.

`record_many` runs for the webhook requests (through `WebhookInbox`, which commits the requests
that arrive together in one transaction): it keeps only the latest state of each contact
(by amoCRM's modification time, so a late duplicate never overwrites a newer state) in
`pending_changes`, and queues one `changes` job per account in the same transaction.
`apply_pending` runs on the worker: it takes the account's pending changes a few hundred at
a time, imports and excludes them through the same `Applier` as the full sync, and deletes
exactly the versions it applied, so a change that arrives meanwhile is never lost.

The webhook's tags and other custom fields travel with the change (`pending_changes.data`)
for the segment rules and the field mapping; its deals are kept as pending leads
(`sync.leads`), applied by the same job after the contacts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Table, bindparam, delete, insert, literal, or_, select, tuple_, update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from amosync.accounts.tokens import amocrm_client
from amosync.accounts.unisender import account_client, resolve_list
from amosync.amocrm.webhooks import ContactChange, WebhookPayload
from amosync.db.engine import PreparedInsert, insert_for, prepared, transaction
from amosync.db.models import (
    Account,
    Contact,
    ListedEmail,
    PendingChange,
    PendingLead,
    WebhookEvent,
    utcnow,
)
from amosync.errors import (
    AccountGone,
    AuthorizationRevoked,
    InvalidApiKey,
    PermanentUpstreamError,
    TransientUpstreamError,
    Unauthorized,
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
from amosync.sync.leads import apply_pending_leads, record_leads
from amosync.sync.mapping import classify
from amosync.sync.repository import forget_changes
from amosync.sync.restore import read_restored
from amosync.sync.tasks import CHANGES
from amosync.unisender.client import UnisenderClient
from amosync.unisender.models import ImportRow
from amosync.worker.queue import insert_job, job_values
from amosync.worker.tasks import AccountJob

log = structlog.get_logger()

TAKE = 400

NAME_LENGTH = 512  # pending_changes.name and contacts.name
Received = tuple[int, WebhookPayload]  # (account id, the webhook's payload)


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


def change_data(change: ContactChange) -> dict[str, Any] | None:
    """What `pending_changes.data` keeps of a webhook's contact: None when it said nothing
    of tags or other fields, so most rows stay as small as before."""
    if not change.tags and not change.fields:
        return None
    return {"tags": change.tags, "fields": change.fields}


def _counts(payload: WebhookPayload) -> dict[str, int]:
    counts = {"added": 0, "updated": 0, "deleted": 0}
    for change in payload.changes:
        key = {"add": "added", "restore": "added", "update": "updated"}.get(
            change.raw_action, "deleted"
        )
        counts[key] += 1
    return counts


def _latest(received: Sequence[Received]) -> dict[tuple[int, int], tuple[int, ContactChange]]:
    """The state to keep of each contact: later in arrival order wins unless it is older by
    amoCRM's clock (a delete carries no time: it wins)."""
    latest: dict[tuple[int, int], tuple[int, ContactChange]] = {}
    for account_id, payload in received:
        for change in payload.changes:
            key = (account_id, change.amocrm_id)
            previous = latest.get(key)
            if (
                previous is None
                or change.updated_at is None
                or (previous[1].updated_at or 0) <= change.updated_at
            ):
                latest[key] = (account_id, change)
    return latest


PENDING_COLUMNS = (
    "account_id",
    "amocrm_id",
    "action",
    "name",
    "emails",
    "amocrm_updated_at",
    "version",
    "received_at",
    "data",
)
EVENT_COLUMNS = ("account_id", "received_at", "contact_ids", "added", "updated", "deleted")


def _upsert_pending(dialect: Dialect) -> PreparedInsert:
    """Insert a contact's pending state, or replace an older one."""
    table: Table = PendingChange.__table__  # type: ignore[assignment]
    statement = insert_for(dialect.name)(table)
    new = statement.excluded
    upsert = statement.on_conflict_do_update(
        index_elements=["account_id", "amocrm_id"],
        set_={
            "action": new.action,
            "name": new.name,
            "emails": new.emails,
            "amocrm_updated_at": new.amocrm_updated_at,
            "data": new.data,
            "version": table.c.version + 1,
            "received_at": new.received_at,
            # A new state has failed nothing yet.
            "attempts": literal(0),
        },
        # The latest state wins: an older delivery arriving late changes nothing.
        where=or_(
            table.c.amocrm_updated_at.is_(None),
            new.amocrm_updated_at.is_(None),
            new.amocrm_updated_at >= table.c.amocrm_updated_at,
        ),
    )
    return PreparedInsert(upsert, dialect, PENDING_COLUMNS)


def _queue_changes(dialect: Dialect) -> PreparedInsert:
    """The `changes` jobs of a batch's accounts, each joining its pending one if any."""
    job = insert_job(dialect.name, deduplicated=True)
    return PreparedInsert(job, dialect, tuple(job_values(CHANGES.kind, account_id=None)))


def _insert_events(dialect: Dialect) -> PreparedInsert:
    table: Table = WebhookEvent.__table__  # type: ignore[assignment]
    return PreparedInsert(insert(table), dialect, EVENT_COLUMNS)


async def record_many(
    connection: AsyncConnection, received: Sequence[Received]
) -> list[dict[str, int]]:
    """Store the contact changes of several webhooks in the caller's transaction and queue
    one `changes` job per account. Returns each webhook's counts, in order.

    On a Core connection, not an ORM session: the session's bulk-insert machinery cost more
    than the statements themselves, and this runs for every batch of webhooks."""
    counts = [_counts(payload) for _, payload in received]
    latest = _latest(received)
    leads = [(account_id, payload.leads) for account_id, payload in received if payload.leads]
    lead_accounts = await record_leads(connection, leads) if leads else set()
    if not latest and not lead_accounts:
        return counts
    now = utcnow()
    rows = [
        {
            "account_id": account_id,
            "amocrm_id": change.amocrm_id,
            "action": change.action,
            # A name is only shown (and sent as Unisender's Name): a longer one than the
            # column holds is cut rather than refused, or amoCRM would resend it forever.
            "name": change.name[:NAME_LENGTH] if change.name else change.name,
            "emails": change.emails,
            "amocrm_updated_at": change.updated_at,
            "version": 1,
            "received_at": now,
            "data": change_data(change),
        }
        for account_id, change in latest.values()
    ]
    # One row's statement run as executemany: it compiles once, where a multi-row VALUES
    # would compile anew for every batch size.
    if rows:
        await prepared(_upsert_pending, connection.dialect).run(connection, rows)
    events = [
        {
            "account_id": account_id,
            "received_at": now,
            "contact_ids": list(dict.fromkeys(str(c.amocrm_id) for c in payload.changes))[:20],
            **count,
        }
        for (account_id, payload), count in zip(received, counts, strict=True)
        if payload.changes
    ]
    await prepared(_insert_events, connection.dialect).run(connection, events)
    jobs = [
        CHANGES.values(AccountJob(account_id))
        for account_id in sorted({account_id for account_id, _ in latest.values()} | lead_accounts)
    ]
    await prepared(_queue_changes, connection.dialect).run(connection, jobs)
    return counts


# Built once: building and caching a SELECT anew for every batch cost more than running it.
_ACCOUNTS = select(Account.id, Account.status, Account.webhook_token_hash).where(
    Account.id.in_(bindparam("ids", expanding=True))
)


class WebhookInbox:
    """The webhook inbox: which account a token belongs to, and durable storage with group
    commit (the webhooks that arrive while one transaction commits go in the next one).

    One transaction per request would make every request wait its turn for the same few
    locks: SQLite's single writer (where waiters poll with sleeps) and, on PostgreSQL, the
    pending `changes:<account>` job row every request of an account upserts. `store`
    returns only once its webhook is committed, so a 2xx still means stored. A batch that
    fails is retried one webhook at a time, so a bad one fails alone.

    Tokens are remembered once seen, so a request needs no query of its own; the writer
    checks every token against the accounts table in the transaction that stores its
    webhook, so a token that stopped being valid is refused exactly as before.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        on_stored: Callable[[], None] | None = None,
        *,
        max_batch: int = 500,
        max_tokens: int = 100_000,
    ) -> None:
        self._engine = engine
        self._on_stored = on_stored
        self._max_batch = max_batch
        self._max_tokens = max_tokens
        self._accounts: dict[str, int] = {}  # token hash → account id
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None
        self._connection: AsyncConnection | None = None

    async def account_for(self, token_hash: str) -> int | None:
        """The account whose webhook token has this hash; None when there is none."""
        account_id = self._accounts.get(token_hash)
        if account_id is not None:
            return account_id
        async with self._engine.connect() as connection:
            query = select(Account.id).where(Account.webhook_token_hash == token_hash)
            account_id = (await connection.execute(query)).scalar_one_or_none()
        if account_id is None:
            return None
        if len(self._accounts) >= self._max_tokens:
            self._accounts.clear()
        self._accounts[token_hash] = account_id
        return account_id

    async def store(
        self, account_id: int, token_hash: str, payload: WebhookPayload
    ) -> dict[str, int] | None:
        """Store one webhook's changes; returns its counts once they are committed, or None
        when the account is disconnected (the webhook is dropped)."""
        future: asyncio.Future[dict[str, int] | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(account_id, token_hash, payload, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await future

    async def _write(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                await self._commit(batch)
        finally:
            # Cancelled (shutting down): nobody will store what is left.
            for waiting in self._waiting:
                waiting.settle(RuntimeError("the service is shutting down"))
            self._waiting.clear()

    async def _commit(self, batch: list[_Waiting]) -> None:
        try:
            connection = await self._connect()
            async with connection.begin():
                accepted = await self._check(connection, batch)
                counts = await record_many(
                    connection, [(w.account_id, w.payload) for w in accepted]
                )
        except Exception as exc:
            await self._disconnect()  # it may be what failed: the next batch takes another
            if len(batch) > 1:
                log.warning("webhook.batch.failed", webhooks=len(batch), error=type(exc).__name__)
                for waiting in batch:
                    await self._commit([waiting])
                return
            batch[0].settle(exc)
            return
        for waiting, count in zip(accepted, counts, strict=True):
            waiting.settle(count)
        if accepted and self._on_stored is not None:
            self._on_stored()

    async def _connect(self) -> AsyncConnection:
        """The writer's own connection, kept from one batch to the next: taking one from the
        pool (which pings it first on PostgreSQL) for every batch cost as much as a
        statement. Only the writer uses it, one transaction at a time."""
        if self._connection is None:
            self._connection = await self._engine.connect()
        return self._connection

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def aclose(self) -> None:
        """Give the writer's connection back (the service is stopping)."""
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        await self._disconnect()

    async def _check(self, connection: AsyncConnection, batch: list[_Waiting]) -> list[_Waiting]:
        """Settle the webhooks whose token is no longer valid or whose account is
        disconnected; returns the others."""
        rows = await connection.execute(_ACCOUNTS, {"ids": list({w.account_id for w in batch})})
        accounts = {account_id: (status, token) for account_id, status, token in rows}
        accepted = []
        for waiting in batch:
            status, token = accounts.get(waiting.account_id, (None, None))
            if token != waiting.token_hash:
                self._accounts.pop(waiting.token_hash, None)
                waiting.settle(Unauthorized("unknown webhook token", code="invalid_webhook_token"))
            elif status == "disconnected":
                # amoCRM retries refused deliveries; a disconnected account's are dropped.
                waiting.settle(None)
            else:
                accepted.append(waiting)
        return accepted


@dataclass(slots=True)
class _Waiting:
    account_id: int
    token_hash: str
    payload: WebhookPayload
    future: asyncio.Future[dict[str, int] | None]

    def settle(self, outcome: dict[str, int] | None | Exception) -> None:
        if self.future.done():  # the request was cancelled (client gone)
            return
        if isinstance(outcome, Exception):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)


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
        if account is None or account.status == "disconnected":
            await session.execute(
                delete(PendingChange).where(PendingChange.account_id == account_id)
            )
            await session.execute(delete(PendingLead).where(PendingLead.account_id == account_id))
            return 0
        if account.unisender_key_enc is None:
            return 0  # kept until a key is connected; the first full sync covers them anyway
        unisender = account_client(services, account)
        list_id = account.list_id
        stored_settings = account.settings
    if list_id is None:
        list_id = await resolve_list(unisender, None, services.settings.unisender_list_title)
        async with transaction(services.sessions) as session:
            await session.execute(
                update(Account).where(Account.id == account_id).values(list_id=list_id)
            )
    segments = account_segments(stored_settings, list_id)
    applier = Applier(account_id, list_id, unisender, services.sessions, segments)
    applied = await _Pending(services, account_id, applier, unisender).run(deadline)
    # Deals after contacts: a contact a deal links is then stored with its latest state.
    amocrm = None
    if segments is not None and segments.wants_leads:
        amocrm = await amocrm_client(services, account_id)
    await apply_pending_leads(services, account_id, applier, amocrm, deadline=deadline)
    return applied


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

    def __init__(
        self,
        services: Services,
        account_id: int,
        applier: Applier,
        unisender: UnisenderClient,
    ) -> None:
        self.services = services
        self.account_id = account_id
        self.applier = applier
        self.unisender = unisender
        self.applied = 0
        self.imported = False  # a batch went through in this run
        self.set_aside_count = 0
        self.skipped: set[int] = set()  # suspects that failed again in this run
        self.failure: Exception | None = None

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
            await session.execute(
                update(PendingChange)
                .where(
                    PendingChange.account_id == self.account_id,
                    tuple_(PendingChange.amocrm_id, PendingChange.version).in_(
                        [(c.amocrm_id, c.version) for c in group]
                    ),
                )
                .values(attempts=PendingChange.attempts + 1)
            )

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
