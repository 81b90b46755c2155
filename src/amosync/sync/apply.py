"""Putting contacts' addresses in the account's Unisender list, and taking them out.

Both the full sync and webhook changes end here: a batch of contacts' desired states goes to
Unisender as one `importContacts` call, rejected rows become unsynced with
`unisender:<code>`, addresses a contact no longer has are excluded from the list (unless
another contact of the account still has them), and the contacts table and the listed
addresses are updated to match, in the caller's transaction.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import Table, delete, insert, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from amosync.db.engine import PreparedInsert, among, dialect_name, insert_for, prepared
from amosync.db.models import Account, Contact, ListedEmail, utcnow
from amosync.errors import PermanentUpstreamError
from amosync.sync.mapping import normalize_email
from amosync.unisender.client import UnisenderClient
from amosync.unisender.models import ImportRow

log = structlog.get_logger()

MAX_ROWS = 500


class AccountGone(PermanentUpstreamError):
    """The account was disconnected or deleted while its work was running."""


@dataclass
class ContactState:
    """What one amoCRM contact should look like in the list."""

    amocrm_id: int
    name: str | None
    emails: list[str]  # every EMAIL value, as shown to the operator
    valid: list[str]  # the addresses to list (trimmed, de-duplicated, syntax-checked)
    reason: str | None  # no_email / invalid_email when `valid` is empty
    updated_at: int | None = None

    @property
    def rows(self) -> int:
        return len(self.valid)


@dataclass
class Outcome:
    synced: int = 0
    unsynced: int = 0
    excluded: list[str] = field(default_factory=list)


def batches(
    contacts: Iterable[ContactState], max_rows: int = MAX_ROWS
) -> Iterable[list[ContactState]]:
    """Group contacts so one batch is at most `max_rows` rows; a contact is never split."""
    batch: list[ContactState] = []
    rows = 0
    for contact in contacts:
        if batch and rows + contact.rows > max_rows:
            yield batch
            batch, rows = [], 0
        batch.append(contact)
        rows += contact.rows
    if batch:
        yield batch


Rejections = dict[int, list[tuple[str, str, str]]]  # contact → (address, code, message)

GUARD_SECONDS = 1.0


class Applier:
    """Applies batches of contact states for one account and list.

    `send` is the Unisender half (one importContacts), `record` the database half; `apply`
    does both. The full sync runs the halves in separate pipeline stages.
    """

    def __init__(
        self,
        account_id: int,
        list_id: int,
        unisender: UnisenderClient,
        sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        self.account_id = account_id
        self.list_id = list_id
        self.unisender = unisender
        self.sessions = sessions
        self._checked_at = -GUARD_SECONDS

    async def apply(
        self,
        session: AsyncSession,
        contacts: Sequence[ContactState],
        *,
        run_id: int | None = None,
    ) -> Outcome:
        """Import one batch (≤ 500 rows) and record the result."""
        rejected = await self.send(contacts)
        return await self.record(session, contacts, rejected, run_id=run_id)

    async def send(self, contacts: Sequence[ContactState]) -> Rejections:
        """One importContacts call for the batch; returns the rows Unisender refused."""
        rows: list[ImportRow] = []
        owners: list[tuple[int, str]] = []  # row index → (contact, address)
        for contact in contacts:
            for address in contact.valid:
                rows.append(ImportRow(email=address, name=contact.name or ""))
                owners.append((contact.amocrm_id, address))
        if len(rows) > MAX_ROWS:
            raise ValueError(f"a batch holds {len(rows)} rows; at most {MAX_ROWS}")
        rejected: Rejections = defaultdict(list)
        if not rows:
            return rejected
        await self._guard()
        result = await self.unisender.import_contacts(rows, list_id=self.list_id)
        for entry in result.log:
            if 0 <= entry.index < len(owners):
                amocrm_id, address = owners[entry.index]
                rejected[amocrm_id].append((address, entry.code, entry.message))
        return rejected

    async def record(
        self,
        session: AsyncSession,
        contacts: Sequence[ContactState],
        rejected: Rejections,
        *,
        run_id: int | None = None,
    ) -> Outcome:
        """Exclude dropped addresses and store the batch's contacts and listed addresses."""
        listed_now: dict[int, set[str]] = {}
        for contact in contacts:
            addresses = contact.valid
            if rejected and contact.amocrm_id in rejected:
                refused = {address for address, _, _ in rejected[contact.amocrm_id]}
                addresses = [a for a in addresses if a not in refused]
            listed_now[contact.amocrm_id] = {normalize_email(a) for a in addresses}
        excluded = await self._exclude_dropped(session, listed_now)
        outcome = Outcome(excluded=excluded)
        now = utcnow()
        values = []
        for contact in contacts:
            if listed_now[contact.amocrm_id]:
                state, reason, detail, synced_at = "synced", None, None, now
                outcome.synced += 1
            else:
                rows_refused = rejected.get(contact.amocrm_id)
                if rows_refused:
                    _, code, detail = rows_refused[0]
                    reason = f"unisender:{code}"
                else:
                    reason, detail = contact.reason or "no_email", None
                state, synced_at = "unsynced", None
                outcome.unsynced += 1
            values.append(
                {
                    "account_id": self.account_id,
                    "amocrm_id": contact.amocrm_id,
                    "name": contact.name,
                    "emails": contact.emails,
                    "amocrm_updated_at": contact.updated_at,
                    "updated_at": now,
                    "seen_run_id": run_id,
                    "state": state,
                    "reason": reason,
                    "detail": detail,
                    "synced_at": synced_at,
                }
            )
        await self._store(session, values, listed_now, keep_seen=run_id is None)
        return outcome

    async def remove(self, session: AsyncSession, amocrm_ids: Sequence[int]) -> list[str]:
        """Contacts deleted in amoCRM: exclude their addresses, forget them."""
        if not amocrm_ids:
            return []
        await self._guard(force=True)
        excluded = await self._exclude_dropped(session, dict.fromkeys(amocrm_ids, set()))
        await session.execute(
            delete(ListedEmail).where(
                ListedEmail.account_id == self.account_id, ListedEmail.amocrm_id.in_(amocrm_ids)
            )
        )
        await session.execute(
            delete(Contact).where(
                Contact.account_id == self.account_id, Contact.amocrm_id.in_(amocrm_ids)
            )
        )
        return excluded

    async def _guard(self, *, force: bool = False) -> None:
        """A disconnect may land while a job runs: from then on nothing goes upstream.

        Checked at most once a second (a million-contact sync sends thousands of batches).
        """
        now = time.monotonic()
        if not force and now - self._checked_at < GUARD_SECONDS:
            return
        async with self.sessions() as session:
            status = await session.scalar(
                select(Account.status).where(Account.id == self.account_id)
            )
        if status is None or status == "disconnected":
            raise AccountGone(f"account {self.account_id} is disconnected", api="amosync")
        self._checked_at = now

    async def _exclude_dropped(
        self, session: AsyncSession, listed_now: dict[int, set[str]]
    ) -> list[str]:
        """Exclude addresses these contacts no longer list and no other contact has."""
        ids = list(listed_now)
        dialect = dialect_name(session)
        before = await session.execute(
            select(ListedEmail.amocrm_id, ListedEmail.email).where(
                ListedEmail.account_id == self.account_id,
                among(ListedEmail.amocrm_id, ids, dialect),
            )
        )
        still_wanted = set().union(*listed_now.values()) if listed_now else set()
        dropped = {
            email for amocrm_id, email in before if email not in listed_now.get(amocrm_id, set())
        } - still_wanted
        if not dropped:
            return []
        others = await session.execute(
            select(ListedEmail.email)
            .where(
                ListedEmail.account_id == self.account_id,
                ListedEmail.email.in_(dropped),
                ~among(ListedEmail.amocrm_id, ids, dialect),
            )
            .distinct()
        )
        dropped -= {email for (email,) in others}
        await self._guard()
        for email in sorted(dropped):
            await self.unisender.exclude(email, [self.list_id])
        if dropped:
            log.info("sync.excluded", account_id=self.account_id, addresses=len(dropped))
        return sorted(dropped)

    async def _store(
        self,
        session: AsyncSession,
        values: list[dict[str, Any]],
        listed_now: dict[int, set[str]],
        *,
        keep_seen: bool,
    ) -> None:
        if not values:
            return
        connection = await session.connection()
        upsert = _upsert_keeping_seen if keep_seen else _upsert_contacts
        await prepared(upsert, connection.dialect).run(connection, values)
        # No ORM bookkeeping: the session holds no ListedEmail objects, and its default
        # ("fetch" the deleted keys) cost more than the delete.
        await session.execute(
            delete(ListedEmail)
            .where(
                ListedEmail.account_id == self.account_id,
                among(ListedEmail.amocrm_id, listed_now, dialect_name(session)),
            )
            .execution_options(synchronize_session=False)
        )
        listed = [
            {"account_id": self.account_id, "email": email, "amocrm_id": amocrm_id}
            for amocrm_id, emails in listed_now.items()
            for email in emails
        ]
        await prepared(_insert_listed, connection.dialect).run(connection, listed)


CONTACT_COLUMNS = (
    "account_id",
    "amocrm_id",
    "name",
    "emails",
    "amocrm_updated_at",
    "updated_at",
    "seen_run_id",
    "state",
    "reason",
    "detail",
    "synced_at",
)


def _contact_upsert(dialect: Dialect, *, keep_seen: bool) -> PreparedInsert:
    table: Table = Contact.__table__  # type: ignore[assignment]
    statement = insert_for(dialect.name)(table)
    updated = {
        name: statement.excluded[name]
        for name in CONTACT_COLUMNS[2:]
        # A webhook change must not reset which full sync saw the contact.
        if not (keep_seen and name == "seen_run_id")
    }
    upsert = statement.on_conflict_do_update(
        index_elements=["account_id", "amocrm_id"], set_=updated
    )
    return PreparedInsert(upsert, dialect, CONTACT_COLUMNS)


def _upsert_contacts(dialect: Dialect) -> PreparedInsert:
    return _contact_upsert(dialect, keep_seen=False)


def _upsert_keeping_seen(dialect: Dialect) -> PreparedInsert:
    return _contact_upsert(dialect, keep_seen=True)


def _insert_listed(dialect: Dialect) -> PreparedInsert:
    table: Table = ListedEmail.__table__  # type: ignore[assignment]
    return PreparedInsert(insert(table), dialect, ("account_id", "email", "amocrm_id"))
