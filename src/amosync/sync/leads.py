"""Leads for `lead_statuses` rules (SPEC §8): which deals in wanted statuses link to which
contacts (`lead_links`), read by the full sync through the leads filter and kept up to date
by lead webhooks.

A lead webhook says which deal changed but not which contacts it links, so it is stored as
a pending lead (coalesced per deal, like contact changes per contact); the `changes` job
reads the deal (`GET /api/v4/leads/{id}?with=contacts`), replaces its links, and evaluates
again, from the database, the contacts it linked before and links now.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import Table, delete, insert, literal, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from amosync.amocrm.client import AmoCRMClient
from amosync.amocrm.models import Lead
from amosync.amocrm.webhooks import LeadChange
from amosync.db.engine import PreparedInsert, among, dialect_name, insert_for, prepared, transaction
from amosync.db.models import Contact, LeadLink, PendingLead, utcnow
from amosync.runtime.services import Services
from amosync.segments.engine import Segments, Status
from amosync.segments.members import linked_statuses
from amosync.sync.apply import Applier, ContactState, batches
from amosync.sync.mapping import classify
from amosync.sync.repository import forget_leads, leads_failed

log = structlog.get_logger()

TAKE = 100
# Deals read before their contacts are evaluated together: at 7 requests a second, about a
# second and a half of reading, so a burst costs fewer imports and a single change no wait.
LEADS_PER_APPLY = 10
# A lead whose reading or applying failed this many times is dropped (logged): the next
# full sync reads every lead in the wanted statuses anyway.
GIVE_UP_AFTER = 5

LinkRow = dict[str, int]


def links_of(account_id: int, lead: Lead) -> list[LinkRow]:
    return [
        {
            "account_id": account_id,
            "lead_id": lead.id,
            "contact_id": contact_id,
            "pipeline_id": lead.pipeline_id,
            "status_id": lead.status_id,
        }
        for contact_id in dict.fromkeys(lead.contact_ids)
    ]


class LeadsRead:
    """What the full sync read of the account's leads in wanted statuses."""

    def __init__(self) -> None:
        self.statuses: dict[int, set[Status]] = defaultdict(set)
        self.links: list[LinkRow] = []
        self.pages = 0


async def read_leads(
    amocrm: AmoCRMClient, account_id: int, statuses: Sequence[Status]
) -> LeadsRead:
    """Every lead in these statuses (the leads filter, a page at a time, through the
    account's rate limit like every other call) and the contacts each links."""
    read = LeadsRead()
    wanted = set(statuses)
    async for page in amocrm.iter_leads(list(statuses)):
        read.pages += 1
        for lead in page:
            # The filter should return only these; a lead moved meanwhile is left out.
            if (lead.pipeline_id, lead.status_id) not in wanted:
                continue
            for row in links_of(account_id, lead):
                read.statuses[row["contact_id"]].add((lead.pipeline_id, lead.status_id))
                read.links.append(row)
    return read


async def replace_links(session: AsyncSession, account_id: int, links: list[LinkRow]) -> None:
    """The account's links are what the full sync read, nothing else."""
    await session.execute(delete(LeadLink).where(LeadLink.account_id == account_id))
    connection = await session.connection()
    await prepared(_insert_links, connection.dialect).run(connection, links)


def _insert_links(dialect: Dialect) -> PreparedInsert:
    table: Table = LeadLink.__table__  # type: ignore[assignment]
    return PreparedInsert(
        insert(table), dialect, ("account_id", "lead_id", "contact_id", "pipeline_id", "status_id")
    )


# --- webhooks ---------------------------------------------------------------------------

PENDING_COLUMNS = ("account_id", "lead_id", "version", "received_at")


def _upsert_pending(dialect: Dialect) -> PreparedInsert:
    table: Table = PendingLead.__table__  # type: ignore[assignment]
    statement = insert_for(dialect.name)(table)
    upsert = statement.on_conflict_do_update(
        index_elements=["account_id", "lead_id"],
        set_={
            "version": table.c.version + 1,
            "received_at": statement.excluded.received_at,
            "attempts": literal(0),
        },
    )
    return PreparedInsert(upsert, dialect, PENDING_COLUMNS)


async def record_leads(
    connection: AsyncConnection, received: Sequence[tuple[int, Sequence[LeadChange]]]
) -> set[int]:
    """Store the deals these webhooks name as pending (one row per deal, whatever the
    action: the job reads the deal as it is now). Returns the accounts that got some."""
    now = utcnow()
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for account_id, leads in received:
        for lead in leads:
            rows[(account_id, lead.lead_id)] = {
                "account_id": account_id,
                "lead_id": lead.lead_id,
                "version": 1,
                "received_at": now,
            }
    if rows:
        await prepared(_upsert_pending, connection.dialect).run(connection, list(rows.values()))
    return {account_id for account_id, _ in rows}


async def apply_pending_leads(
    services: Services,
    account_id: int,
    applier: Applier,
    amocrm: AmoCRMClient | None,
    *,
    deadline: float,
) -> int:
    """Read the account's pending deals and re-evaluate their contacts; returns how many
    deals were applied. Without a `lead_statuses` rule they are only forgotten."""
    segments = applier.segments
    done = 0
    while time.monotonic() < deadline:
        async with services.sessions() as session:
            pending = list(
                (
                    await session.execute(
                        select(PendingLead)
                        .where(PendingLead.account_id == account_id)
                        .order_by(PendingLead.attempts, PendingLead.received_at)
                        .limit(TAKE)
                    )
                ).scalars()
            )
        if not pending:
            break
        if segments is None or not segments.wants_leads or amocrm is None:
            async with transaction(services.sessions) as session:
                await forget_leads(session, account_id, pending)
            done += len(pending)
            continue
        for start in range(0, len(pending), LEADS_PER_APPLY):
            group = pending[start : start + LEADS_PER_APPLY]
            await _apply_group(services, account_id, applier, segments, amocrm, group)
            done += len(group)
    return done


async def _apply_group(
    services: Services,
    account_id: int,
    applier: Applier,
    segments: Segments,
    amocrm: AmoCRMClient,
    group: Sequence[PendingLead],
) -> None:
    """Read these deals, replace their links and evaluate their contacts again, together:
    one import for the contacts of several deals. A deal that cannot be read stops the
    group there (what was read is applied first) and fails the job, so it is retried."""
    read: list[tuple[PendingLead, Lead | None]] = []
    failed: tuple[PendingLead, Exception] | None = None
    for pending in group:
        try:
            read.append((pending, await amocrm.get_lead(pending.lead_id)))
        except Exception as exc:
            failed = (pending, exc)
            break
    if read:
        wanted = set(segments.wanted_statuses())
        rows = [
            row
            for _, lead in read
            if lead is not None and (lead.pipeline_id, lead.status_id) in wanted
            for row in links_of(account_id, lead)
        ]
        lead_ids = [pending.lead_id for pending, _ in read]
        async with transaction(services.sessions) as session:
            dialect = dialect_name(session)
            before = set(
                (
                    await session.execute(
                        select(LeadLink.contact_id).where(
                            LeadLink.account_id == account_id,
                            among(LeadLink.lead_id, lead_ids, dialect),
                        )
                    )
                ).scalars()
            )
            await session.execute(
                delete(LeadLink).where(
                    LeadLink.account_id == account_id, among(LeadLink.lead_id, lead_ids, dialect)
                )
            )
            connection = await session.connection()
            await prepared(_insert_links, connection.dialect).run(connection, rows)
            affected = sorted(before | {row["contact_id"] for row in rows})
            await reevaluate(session, account_id, applier, segments, affected)
            await forget_leads(session, account_id, [pending for pending, _ in read])
        log.info(
            "webhook.leads.applied",
            account_id=account_id,
            leads=len(read),
            contacts=len(affected),
            linked=len(rows),
        )
    if failed is not None:
        await _failed(services, account_id, *failed)


async def _failed(
    services: Services, account_id: int, pending: PendingLead, exc: Exception
) -> None:
    if pending.attempts + 1 >= GIVE_UP_AFTER:
        log.warning(
            "webhook.lead.dropped",
            account_id=account_id,
            lead_id=pending.lead_id,
            error=f"{type(exc).__name__}: {exc}",
        )
        async with transaction(services.sessions) as session:
            await forget_leads(session, account_id, [pending])
        return
    async with transaction(services.sessions) as session:
        await leads_failed(session, account_id, [pending])
    raise exc


async def reevaluate(
    session: AsyncSession,
    account_id: int,
    applier: Applier,
    segments: Segments,
    contact_ids: Sequence[int],
) -> None:
    """Put these contacts (as the database holds them) in the segment lists their tags and
    linked leads now choose, and out of the others. A contact amosync has not stored yet is
    left to its own webhook or the full sync."""
    if not contact_ids:
        return
    stored = (
        await session.execute(
            select(Contact).where(
                Contact.account_id == account_id,
                among(Contact.amocrm_id, list(contact_ids), dialect_name(session)),
            )
        )
    ).scalars()
    statuses = await linked_statuses(session, account_id, contact_ids)
    states = []
    for contact in stored:
        emails = classify(contact.emails or [])
        if not emails.valid:
            continue  # in no list at all, so in no segment list either: nothing changes
        state = ContactState.of(contact.amocrm_id, contact.name, emails, contact.amocrm_updated_at)
        state.tags = list(contact.tags or [])
        state.lists = segments.lists_for(state.tags, statuses.get(contact.amocrm_id, set()))
        states.append(state)
    for batch in batches(states):
        await applier.apply(session, batch)
