"""Putting contacts' addresses in the account's Unisender list, and taking them out.

Both the full sync and webhook changes end here: a batch of contacts' desired states goes to
Unisender as one `importContacts` call, rejected rows become unsynced with
`unisender:<code>`, addresses a contact no longer has are excluded from the list (unless
another contact of the account still has them), and the contacts table and the listed
addresses are updated to match, in the caller's transaction.

Segment lists (SPEC §8) ride on the same call: a row's `email_list_ids` names the main list
and the segment lists its contact matches, and an address leaves a segment list (one
`exclude` naming every list it leaves) once no contact that has it matches any more.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import Table, delete, insert, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from amosync.db.engine import PreparedInsert, among, dialect_name, insert_for, prepared
from amosync.db.models import Account, AccountStatus, Contact, ListedEmail, SegmentMember, utcnow
from amosync.errors import AccountGone, InvalidApiKey, PermanentUpstreamError
from amosync.segments.engine import NO_STATUSES, Segments, Status
from amosync.sync.activity import count_applied
from amosync.sync.mapping import EmailSet, normalize_email, unsynced_reason
from amosync.unisender.client import UnisenderClient
from amosync.unisender.models import ImportResult, ImportRow

log = structlog.get_logger()

MAX_ROWS = 500


class RefusedThroughout(PermanentUpstreamError):
    """importContacts refused the halves of a refused call too, past `ISOLATION_CALLS`:
    the refusal is not about single rows."""


@dataclass
class ContactState:
    """What one amoCRM contact should look like in the list."""

    amocrm_id: int
    name: str | None
    emails: list[str]  # every EMAIL value, as shown to the operator
    valid: list[str]  # the addresses to list (trimmed, de-duplicated, syntax-checked)
    reason: str | None  # no_email / invalid_email when `valid` is empty
    updated_at: int | None = None
    tags: list[str] | None = None  # its tag names; None when not known
    # The row's columns beyond the address and the name (phone, tags, custom fields).
    # None rather than an empty dict: a full sync builds a state per contact, and every
    # object it allocates adds to the garbage collector's passes.
    columns: dict[str, str] | None = None
    lists: tuple[int, ...] = ()  # the segment lists it matches

    @classmethod
    def of(
        cls, amocrm_id: int, name: str | None, emails: EmailSet, updated_at: int | None
    ) -> ContactState:
        """A contact with these addresses: listed by its valid ones, unsynced (and why) with
        none; the full sync, the webhook changes and the deals' re-evaluation build it so."""
        return cls(
            amocrm_id=amocrm_id,
            name=name,
            emails=[*emails.valid, *emails.invalid],
            valid=emails.valid,
            reason=unsynced_reason(emails),
            updated_at=updated_at,
        )

    def choose_segments(
        self,
        segments: Segments,
        tags: list[str],
        linked: set[Status] | None,
        fields: Sequence[Mapping[str, Any]] | None,
    ) -> None:
        """Its segment lists (by its tags and the statuses of its `linked` leads) and its
        extra columns (from its custom `fields`), each only where `segments` reads them."""
        if segments.active:
            self.tags = tags
            self.lists = segments.lists_for(tags, linked or NO_STATUSES)
        if segments.wants_columns and self.valid:
            self.columns = segments.columns(fields, tags)

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
    """Group contacts so one batch is at most `max_rows` rows; a contact is never split
    between batches (its addresses are recorded together), so one with more rows than that
    makes a batch of its own, which `Applier.send` imports in several calls."""
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
Owners = list[tuple[int, str]]  # row index → (contact, address)
Memberships = dict[int, set[tuple[int, str]]]  # contact → (segment list, address)

GUARD_SECONDS = 1.0
# Error codes that refuse a call for the account or the request as a whole, never for what
# one of its rows holds: halving the call would only repeat the refusal.
CALL_CODES = frozenset({"invalid_api_key", "access_denied", "not_enough_money", "unknown_method"})
# Extra calls one batch may spend finding the rows a refused call was refused for: one
# such row among 500 takes about 18 (two halves a level); more means the refusal is not
# about single rows, and the batch fails with it.
ISOLATION_CALLS = 40
# A call's warnings are logged, at most this many (a batch may warn about every row).
WARNINGS_LOGGED = 5


def is_row_error(exc: PermanentUpstreamError) -> bool:
    """Whether a refused importContacts may be about what one of its rows holds (the
    documented "contacts ... already exist but owned by different subscribers", which
    carries no code), not about the account or the request."""
    return (
        exc.api == "unisender"
        and not isinstance(exc, (InvalidApiKey, RefusedThroughout))
        and exc.code is not None
        and exc.code not in CALL_CODES
    )


class Applier:
    """Applies batches of contact states for one account and list.

    `send` is the Unisender half (one importContacts), `record` the database half; `apply`
    does both. The full sync runs the halves in separate pipeline stages.

    With `segments` active, each row also names the segment lists its contact matches
    (`ContactState.lists`) and `record` keeps `segment_members` in step, excluding an
    address from a segment list once no contact that has it matches the list any more.
    """

    def __init__(
        self,
        account_id: int,
        list_id: int,
        unisender: UnisenderClient,
        sessions: async_sessionmaker[AsyncSession],
        segments: Segments | None = None,
    ) -> None:
        self.account_id = account_id
        self.list_id = list_id
        self.unisender = unisender
        self.sessions = sessions
        self.segments = segments
        # Segment bookkeeping only where a rule asks for it: an account without rules
        # costs no query more per batch than before segments existed.
        self.tracking = segments is not None and segments.active
        self._segment_lists = segments.lists if segments is not None else ()
        self._ensured: set[str] = set()
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
        """Import the batch (one importContacts per 500 rows: a contact with more
        addresses takes several); returns the rows Unisender refused.

        A call refused as a whole for what a row holds is halved until the refused rows
        are alone; they come back as refused with the error's code, the others import.
        """
        rows: list[ImportRow] = []
        owners: Owners = []
        main = str(self.list_id)
        for contact in contacts:
            name = contact.name or ""
            list_ids = ",".join([main, *map(str, contact.lists)]) if contact.lists else None
            columns = contact.columns or None
            for address in contact.valid:
                rows.append(ImportRow(address, name, list_ids, columns))
                owners.append((contact.amocrm_id, address))
        rejected: Rejections = defaultdict(list)
        if not rows:
            return rejected
        await self._guard()
        await self._ensure_fields(contacts)
        if len(rows) <= MAX_ROWS:
            await self._import(rows, owners, rejected)
            return rejected
        for start in range(0, len(rows), MAX_ROWS):
            await self._guard()
            end = start + MAX_ROWS
            await self._import(rows[start:end], owners[start:end], rejected)
        return rejected

    async def _ensure_fields(self, contacts: Sequence[ContactState]) -> None:
        """Create the custom Unisender fields this batch is the first to need (§8)."""
        if self.segments is None or not self.segments.fields.custom:
            return
        custom = {pair.unisender_field for pair in self.segments.fields.custom}
        needed = {name for contact in contacts for name in contact.columns or ()}
        missing = sorted((needed & custom) - self._ensured)
        if missing:
            await self.unisender.ensure_fields(missing)
            self._ensured.update(missing)

    async def _import(self, rows: list[ImportRow], owners: Owners, rejected: Rejections) -> None:
        try:
            result = await self.unisender.import_contacts(rows, list_id=self.list_id)
        except PermanentUpstreamError as exc:
            if not is_row_error(exc):
                raise
            await self._isolate(rows, owners, rejected, exc)
            return
        if result.log or result.warnings:
            self._read_log(result, owners, rejected)

    async def _isolate(
        self,
        rows: list[ImportRow],
        owners: Owners,
        rejected: Rejections,
        refusal: PermanentUpstreamError,
    ) -> None:
        """Halve a refused call until the rows it was refused for stand alone."""
        budget = ISOLATION_CALLS
        parts = [(rows, owners, refusal)]
        while parts:
            part_rows, part_owners, error = parts.pop()
            if len(part_rows) == 1:
                amocrm_id, address = part_owners[0]
                rejected[amocrm_id].append((address, error.code or "unspecified", error.message))
                continue
            middle = len(part_rows) // 2
            for half_rows, half_owners in (
                (part_rows[:middle], part_owners[:middle]),
                (part_rows[middle:], part_owners[middle:]),
            ):
                if budget <= 0:
                    raise RefusedThroughout(
                        refusal.message,
                        api=refusal.api,
                        status=refusal.status,
                        code=refusal.code,
                        body=refusal.body,
                    ) from refusal
                budget -= 1
                try:
                    result = await self.unisender.import_contacts(half_rows, list_id=self.list_id)
                except PermanentUpstreamError as exc:
                    if not is_row_error(exc):
                        raise
                    parts.append((half_rows, half_owners, exc))
                    continue
                if result.log or result.warnings:
                    self._read_log(result, half_owners, rejected)
        log.warning(
            "sync.import.isolated",
            account_id=self.account_id,
            rows=len(rows),
            code=refusal.code,
            calls=ISOLATION_CALLS - budget,
        )

    def _read_log(self, result: ImportResult, owners: Owners, rejected: Rejections) -> None:
        """Refused rows into `rejected`; warnings into the log, their addresses listed."""
        refused = result.refused()
        for entry in refused:
            if 0 <= entry.index < len(owners):
                amocrm_id, address = owners[entry.index]
                rejected[amocrm_id].append((address, entry.code, entry.message))
        refused_ids = {id(entry) for entry in refused}
        warned = [entry for entry in result.log if id(entry) not in refused_ids]
        for entry in warned[:WARNINGS_LOGGED]:
            log.warning(
                "unisender.import.warning",
                account_id=self.account_id,
                code=entry.code,
                message=entry.message,
                row=entry.index,
            )
        for text in result.warnings[:WARNINGS_LOGGED]:
            log.warning("unisender.import.warning", account_id=self.account_id, message=text)

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
        segment_now: Memberships | None = None
        if self.tracking:
            segment_now = {
                contact.amocrm_id: {
                    (list_id, email)
                    for list_id in contact.lists
                    for email in listed_now[contact.amocrm_id]
                }
                for contact in contacts
            }
        excluded = await self._exclude_dropped(session, listed_now, segment_now)
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
                    "tags": contact.tags if self.tracking else None,
                }
            )
        await self._store(session, values, listed_now, segment_now, keep_seen=run_id is None)
        await count_applied(
            session, self.account_id, synced=outcome.synced, unsynced=outcome.unsynced
        )
        return outcome

    async def set_aside(
        self, session: AsyncSession, contact: ContactState, reason: str, detail: str
    ) -> None:
        """A contact whose change could not be applied: unsynced with the error, so the
        operator sees it. What it has in the list stays recorded, so a later state can
        still take those addresses out."""
        connection = await session.connection()
        values = {
            "account_id": self.account_id,
            "amocrm_id": contact.amocrm_id,
            "name": contact.name,
            "emails": contact.emails,
            "amocrm_updated_at": contact.updated_at,
            "updated_at": utcnow(),
            "seen_run_id": None,
            "state": "unsynced",
            "reason": reason[:64],
            "detail": detail,
            "synced_at": None,
            "tags": contact.tags if self.tracking else None,
        }
        await prepared(_upsert_keeping_seen, connection.dialect).run(connection, [values])
        await count_applied(session, self.account_id, unsynced=1)

    async def remove(self, session: AsyncSession, amocrm_ids: Sequence[int]) -> list[str]:
        """Contacts deleted in amoCRM: exclude their addresses, forget them."""
        if not amocrm_ids:
            return []
        await self._guard(force=True)
        gone: dict[int, set[str]] = {amocrm_id: set() for amocrm_id in amocrm_ids}
        segment_gone: Memberships | None = None
        if self.tracking:
            segment_gone = {amocrm_id: set() for amocrm_id in amocrm_ids}
        excluded = await self._exclude_dropped(session, gone, segment_gone)
        await session.execute(
            delete(ListedEmail).where(
                ListedEmail.account_id == self.account_id, ListedEmail.amocrm_id.in_(amocrm_ids)
            )
        )
        await session.execute(
            delete(SegmentMember).where(
                SegmentMember.account_id == self.account_id,
                SegmentMember.amocrm_id.in_(amocrm_ids),
            )
        )
        await session.execute(
            delete(Contact).where(
                Contact.account_id == self.account_id, Contact.amocrm_id.in_(amocrm_ids)
            )
        )
        await count_applied(session, self.account_id, deleted=len(amocrm_ids))
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
        if status is None or status == AccountStatus.DISCONNECTED:
            raise AccountGone(f"account {self.account_id} is disconnected")
        self._checked_at = now

    async def _exclude_dropped(
        self,
        session: AsyncSession,
        listed_now: dict[int, set[str]],
        segment_now: Memberships | None = None,
    ) -> list[str]:
        """Exclude addresses these contacts no longer list and no other contact has, and
        (with `segment_now`) addresses from the segment lists no contact that has them
        matches any more. Returns the addresses excluded from the main list."""
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
        segments = await self._segments_dropped(session, segment_now) if segment_now else {}
        if not dropped and not segments:
            return []
        if dropped:
            dropped -= await self._held_elsewhere(session, dropped, ids)
        await self._guard()
        for email in sorted(dropped | set(segments)):
            lists = [self.list_id] if email in dropped else []
            await self.unisender.exclude(email, lists + sorted(segments.get(email, ())))
        if dropped:
            log.info("sync.excluded", account_id=self.account_id, addresses=len(dropped))
        if segments:
            log.info("sync.segments.excluded", account_id=self.account_id, addresses=len(segments))
        return sorted(dropped)

    async def _held_elsewhere(
        self, session: AsyncSession, dropped: set[str], ids: list[int]
    ) -> set[str]:
        """Which of these addresses another contact (not among `ids`) still has listed."""
        dialect = dialect_name(session)
        others = await session.execute(
            select(ListedEmail.email)
            .where(
                ListedEmail.account_id == self.account_id,
                ListedEmail.email.in_(dropped),
                ~among(ListedEmail.amocrm_id, ids, dialect),
            )
            .distinct()
        )
        return {email for (email,) in others}

    async def _segments_dropped(
        self, session: AsyncSession, segment_now: Memberships
    ) -> dict[str, set[int]]:
        """Address → the segment lists to exclude it from: these contacts put it there and
        no longer match, and no other contact that has it matches (§8).

        Only the lists of the current rules count: a list whose rule was removed is left
        as it is (its members were not asked to leave it)."""
        ids = list(segment_now)
        dialect = dialect_name(session)
        lists = self._segment_lists
        before = await session.execute(
            select(SegmentMember.amocrm_id, SegmentMember.list_id, SegmentMember.email).where(
                SegmentMember.account_id == self.account_id,
                among(SegmentMember.amocrm_id, ids, dialect),
                SegmentMember.list_id.in_(lists),
            )
        )
        wanted = set().union(*segment_now.values())
        dropped = {
            (list_id, email)
            for amocrm_id, list_id, email in before
            if (list_id, email) not in segment_now.get(amocrm_id, set())
        } - wanted
        if not dropped:
            return {}
        held = await session.execute(
            select(SegmentMember.list_id, SegmentMember.email)
            .where(
                SegmentMember.account_id == self.account_id,
                SegmentMember.email.in_({email for _, email in dropped}),
                SegmentMember.list_id.in_(lists),
                ~among(SegmentMember.amocrm_id, ids, dialect),
            )
            .distinct()
        )
        dropped -= {(list_id, email) for list_id, email in held}
        by_email: dict[str, set[int]] = defaultdict(set)
        for list_id, email in dropped:
            by_email[email].add(list_id)
        return by_email

    async def _store(
        self,
        session: AsyncSession,
        values: list[dict[str, Any]],
        listed_now: dict[int, set[str]],
        segment_now: Memberships | None,
        *,
        keep_seen: bool,
    ) -> None:
        if not values:
            return
        connection = await session.connection()
        upsert = _upsert_keeping_seen if keep_seen else _upsert_contacts
        await prepared(upsert, connection.dialect).run(connection, values)
        listed = [
            {"account_id": self.account_id, "email": email, "amocrm_id": amocrm_id}
            for amocrm_id, emails in listed_now.items()
            for email in emails
        ]
        await self._replace(session, ListedEmail, listed_now, _insert_listed, listed)
        if segment_now is None:
            return
        members = [
            {"account_id": self.account_id, "list_id": list_id, "email": email, "amocrm_id": cid}
            for cid, pairs in segment_now.items()
            for list_id, email in pairs
        ]
        await self._replace(session, SegmentMember, segment_now, _insert_members, members)

    async def _replace(
        self,
        session: AsyncSession,
        model: type[ListedEmail] | type[SegmentMember],
        contact_ids: Iterable[int],
        insert: Callable[[Dialect], PreparedInsert],
        rows: list[dict[str, Any]],
    ) -> None:
        """What `model` records of these contacts becomes `rows` (inserted by `insert`)."""
        # No ORM bookkeeping: the session holds none of these objects, and its default
        # ("fetch" the deleted keys) cost more than the delete.
        await session.execute(
            delete(model)
            .where(
                model.account_id == self.account_id,
                among(model.amocrm_id, contact_ids, dialect_name(session)),
            )
            .execution_options(synchronize_session=False)
        )
        connection = await session.connection()
        await prepared(insert, connection.dialect).run(connection, rows)


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
    "tags",
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


def _insert_members(dialect: Dialect) -> PreparedInsert:
    table: Table = SegmentMember.__table__  # type: ignore[assignment]
    return PreparedInsert(insert(table), dialect, ("account_id", "list_id", "email", "amocrm_id"))


def _insert_listed(dialect: Dialect) -> PreparedInsert:
    table: Table = ListedEmail.__table__  # type: ignore[assignment]
    return PreparedInsert(insert(table), dialect, ("account_id", "email", "amocrm_id"))
