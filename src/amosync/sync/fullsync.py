"""The full sync: every contact of an account, page by page, into its Unisender list.

A producer task streams amoCRM pages into a small bounded queue while the consumer maps
contacts to rows and imports them in batches of ≤ 500 rows, so fetching and importing
overlap and amoCRM's rate limit is the only bottleneck; the bounded queue keeps memory
constant whatever the account's size. After each batch the run's counters and its
checkpoint (the next page to fetch) are committed together with the contacts, so a run
killed midway resumes at that page. When every page is done, contacts the run did not see
were deleted in amoCRM: their addresses are excluded and the rows removed.

With a `lead_statuses` rule, one more task reads the deals in the wanted statuses (the
leads filter) through the same rate limit while the first contact pages arrive; contacts
are evaluated against their rules once every deal is in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession

from amosync.accounts.problems import (
    CLEARED_BY_SYNC,
    clear_problem,
    describe,
    note_failure,
    still_blocked,
)
from amosync.accounts.tokens import amocrm_client
from amosync.accounts.unisender import account_client, resolve_list
from amosync.amocrm.client import AmoCRMClient
from amosync.amocrm.models import Contact as AmoContact
from amosync.amocrm.models import ContactsPage
from amosync.db.engine import transaction
from amosync.db.models import Account, AccountStatus, RunStatus, SyncRun, utcnow
from amosync.errors import AmoCRMBlocked, is_permanent, root_cause
from amosync.runtime.metrics import contacts_synced
from amosync.runtime.services import Services
from amosync.segments.engine import Segments, Status
from amosync.segments.members import account_segments
from amosync.sync.apply import MAX_ROWS, Applier, ContactState, Rejections
from amosync.sync.leads import read_leads, replace_links
from amosync.sync.mapping import contact_emails
from amosync.sync.repository import mark_synced, seen_counts, store_list, unseen_contacts
from amosync.sync.tasks import RECONCILE
from amosync.worker.tasks import AccountJob

log = structlog.get_logger()

QUEUE_PAGES = 8
QUEUE_BATCHES = 4
# Results recorded in one transaction when the database stage falls behind.
RECORD_GROUP = 8
# Mapping a page (e-mail validation) yields to the event loop every this many contacts. A
# whole page at once held it for 50-100 ms on a slow machine, so a rate-limited amoCRM call
# left that much late and the next ones bunched up behind it in amoCRM's 1-second window.
YIELD_EVERY = 50
ANALYZE_FIRST = 2000


@dataclass
class Batch:
    """≤ 500 rows of contacts, how many contacts were fetched up to it, and where a resume
    may start once it is recorded (None: mid-page, keep the previous checkpoint)."""

    contacts: list[ContactState]
    fetched: int
    next_page: int | None


SWEEP_CHUNK = 500


def contact_state(
    contact: AmoContact,
    segments: Segments | None = None,
    statuses: Mapping[int, set[Status]] | None = None,
) -> ContactState:
    """The contact as the list should have it; with `segments`, also its segment lists
    (by its tags and the `statuses` of its linked leads) and its extra columns."""
    fields = contact.custom_fields_values
    state = ContactState.of(contact.id, contact.name, contact_emails(fields), contact.updated_at)
    if segments is not None:
        linked = statuses.get(contact.id) if statuses else None
        state.choose_segments(segments, contact.tags, linked, fields)
    return state


class FullSync:
    def __init__(
        self,
        services: Services,
        run_id: int,
        *,
        amocrm: AmoCRMClient | None = None,
        on_progress: Callable[[SyncRun], None] | None = None,
    ) -> None:
        self.services = services
        self.run_id = run_id
        self._amocrm = amocrm
        self.on_progress = on_progress
        self._recorded = 0
        self._resumed = False
        self._analyze_at = ANALYZE_FIRST
        self._account_id: int | None = None
        self._segments: Segments | None = None
        # Contact → (pipeline, status) of its linked leads in wanted statuses, read before
        # the contacts are evaluated.
        self._statuses: dict[int, set[Status]] = {}
        self._leads_read = asyncio.Event()

    async def run(self, *, final_attempt: bool = True) -> None:
        """Run (or resume) the sync. Marks the run failed when it cannot go on.

        The stages run in a TaskGroup, so a failure arrives as an ExceptionGroup: its root
        cause is what decides (a permanent error fails the run now) and what is raised, so
        the worker sees the real error too.
        """
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            cause = root_cause(exc)
            if self._account_id is not None:
                async with self.services.sessions() as session:
                    cause = await still_blocked(session, self._account_id, cause) or cause
            if is_permanent(cause) or final_attempt:
                await self._fail(cause)
            elif isinstance(cause, AmoCRMBlocked):
                await self._waiting(cause)
            if cause is exc or not isinstance(cause, Exception):
                raise
            raise cause from exc

    async def _run(self) -> None:
        services = self.services
        async with transaction(services.sessions) as session:
            run = await session.get(SyncRun, self.run_id, with_for_update=True)
            if run is None or run.status in (RunStatus.DONE, RunStatus.FAILED):
                return
            account = await session.get(Account, run.account_id)
            if account is None or account.status == AccountStatus.DISCONNECTED:
                run.status, run.error, run.finished_at = (
                    RunStatus.FAILED,
                    "account disconnected",
                    utcnow(),
                )
                return
            if run.status == RunStatus.QUEUED:
                run.status, run.started_at = RunStatus.RUNNING, utcnow()
            else:
                self._resumed = True
                await self._recount(session, run)
            account_id, start_page, started_at = run.account_id, run.next_page, run.started_at
            self._account_id = account_id
            unisender = account_client(services, account)
            list_id = account.list_id
            stored_settings = account.settings
            fetched = run.fetched
        bound = log.bind(account_id=account_id, run_id=self.run_id)
        bound.info("sync.started", page=start_page)
        if list_id is None:
            list_id = await resolve_list(unisender, None, services.settings.unisender_list_title)
            async with transaction(services.sessions) as session:
                await store_list(session, account_id, list_id)
        amocrm = self._amocrm or await amocrm_client(services, account_id)
        self._segments = account_segments(stored_settings, list_id)
        applier = Applier(account_id, list_id, unisender, services.sessions, self._segments)

        # Four stages joined by small bounded queues, so memory stays constant and each
        # stage works while the others wait: fetch pages → map into ≤ 500-row batches →
        # importContacts → record in the database (with the checkpoint).
        pages: asyncio.Queue[ContactsPage | None] = asyncio.Queue(maxsize=QUEUE_PAGES)
        batches: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=QUEUE_BATCHES)
        sent: asyncio.Queue[tuple[Batch, Rejections] | None] = asyncio.Queue(maxsize=QUEUE_BATCHES)
        async with asyncio.TaskGroup() as stages:
            if self._segments is not None and self._segments.wants_leads:
                # Leads in the wanted statuses are read alongside the contact pages (one
                # rate limit for both); contacts are evaluated once every lead is in.
                stages.create_task(self._read_leads(amocrm, account_id, self._segments))
            else:
                self._leads_read.set()
            stages.create_task(self._produce(amocrm, start_page, pages))
            stages.create_task(self._map(pages, batches, fetched))
            stages.create_task(self._send(applier, batches, sent))
            stages.create_task(self._record(applier, sent))
        await self._sweep(applier, account_id, started_at)
        await self._finish(account_id)
        bound.info("sync.done")

    async def _produce(
        self, amocrm: AmoCRMClient, start_page: int, pages: asyncio.Queue[ContactsPage | None]
    ) -> None:
        try:
            # Tags only where rules or the field mapping read them (`contact_state`).
            tags = self._segments is not None
            async for page in amocrm.iter_contacts(start_page=start_page, tags=tags):
                await pages.put(page)
        finally:
            await pages.put(None)

    async def _read_leads(self, amocrm: AmoCRMClient, account_id: int, segments: Segments) -> None:
        read = await read_leads(amocrm, account_id, segments.wanted_statuses())
        async with transaction(self.services.sessions) as session:
            await replace_links(session, account_id, read.links)
        self._statuses = dict(read.statuses)
        log.info(
            "sync.leads.read",
            account_id=account_id,
            run_id=self.run_id,
            pages=read.pages,
            links=len(read.links),
        )
        self._leads_read.set()

    async def _map(
        self,
        pages: asyncio.Queue[ContactsPage | None],
        out: asyncio.Queue[Batch | None],
        fetched: int,
    ) -> None:
        batch: list[ContactState] = []
        rows = 0
        await self._leads_read.wait()
        while (page := await pages.get()) is not None:
            for index, contact in enumerate(page.contacts):
                if index and index % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                state = contact_state(contact, self._segments, self._statuses)
                if batch and rows + state.rows > MAX_ROWS:
                    # Mid-page: a resume refetches this page (imports are idempotent).
                    await out.put(Batch(batch, fetched, next_page=page.page))
                    batch, rows = [], 0
                batch.append(state)
                rows += state.rows
                fetched += 1
            # At a page boundary with a full enough batch, the checkpoint moves past it.
            if rows >= MAX_ROWS - 50:
                await out.put(Batch(batch, fetched, next_page=page.page + 1))
                batch, rows = [], 0
        await out.put(Batch(batch, fetched, next_page=None))
        await out.put(None)

    async def _send(
        self,
        applier: Applier,
        batches: asyncio.Queue[Batch | None],
        out: asyncio.Queue[tuple[Batch, Rejections] | None],
    ) -> None:
        while (batch := await batches.get()) is not None:
            await out.put((batch, await applier.send(batch.contacts)))
        await out.put(None)

    async def _record(
        self, applier: Applier, sent: asyncio.Queue[tuple[Batch, Rejections] | None]
    ) -> None:
        """Store results; whatever queued up meanwhile shares one transaction."""
        while (item := await sent.get()) is not None:
            group = [item]
            finished = False
            while len(group) < RECORD_GROUP and not sent.empty():
                more = sent.get_nowait()
                if more is None:
                    finished = True
                    break
                group.append(more)
            await self._store(applier, group)
            if finished:
                return

    async def _store(self, applier: Applier, group: list[tuple[Batch, Rejections]]) -> None:
        synced = unsynced = 0
        async with transaction(self.services.sessions) as session:
            for batch, rejected in group:
                if batch.contacts:
                    outcome = await applier.record(
                        session, batch.contacts, rejected, run_id=self.run_id
                    )
                    synced += outcome.synced
                    unsynced += outcome.unsynced
            contacts_synced.labels(result="synced").inc(synced)
            contacts_synced.labels(result="unsynced").inc(unsynced)
            values: dict[str, object] = {
                "fetched": group[-1][0].fetched,
                "synced": SyncRun.synced + synced,
                "unsynced": SyncRun.unsynced + unsynced,
                "updated_at": utcnow(),
            }
            checkpoints = [b.next_page for b, _ in group if b.next_page is not None]
            if checkpoints:
                values["next_page"] = checkpoints[-1]
            await session.execute(update(SyncRun).where(SyncRun.id == self.run_id).values(**values))
            self._recorded += sum(len(b.contacts) for b, _ in group)
            if self.on_progress is not None:
                run = await session.get(SyncRun, self.run_id, populate_existing=True)
                if run is not None:
                    self.on_progress(run)

        await self._analyze_as_tables_grow()

    async def _analyze_as_tables_grow(self) -> None:
        """PostgreSQL plans the per-batch lookups from table statistics; a first sync grows
        the tables from nothing faster than autovacuum updates them, and plans made for an
        empty table (sequential scans) turn each batch into a scan of everything stored so
        far. ANALYZE at each fourfold growth keeps the plans on the indexes."""
        if self._recorded < self._analyze_at:
            return
        self._analyze_at = self._recorded * 4
        if self.services.engine.dialect.name != "postgresql":
            return
        tables = "contacts, listed_emails"
        if self._segments is not None and self._segments.active:
            tables += ", segment_members, lead_links"
        async with self.services.engine.connect() as connection:
            await connection.execute(text(f"ANALYZE {tables}"))
            await connection.commit()

    async def _recount(self, session: AsyncSession, run: SyncRun) -> None:
        """A resumed run: its counters are what it already stored, nothing counted twice."""
        counts = await seen_counts(session, run.account_id, run.id)
        run.synced = counts.get("synced", 0)
        run.unsynced = counts.get("unsynced", 0)
        run.fetched = sum(counts.values())

    async def _sweep(self, applier: Applier, account_id: int, started_at: datetime | None) -> None:
        """Contacts this run never saw (and no webhook touched since it began) are gone."""
        while True:
            async with transaction(self.services.sessions) as session:
                gone = list(
                    await unseen_contacts(session, account_id, self.run_id, started_at, SWEEP_CHUNK)
                )
                if not gone:
                    return
                await applier.remove(session, gone)

    async def _finish(self, account_id: int) -> None:
        async with transaction(self.services.sessions) as session:
            run = await session.get(SyncRun, self.run_id, with_for_update=True)
            assert run is not None  # a run is never deleted while its sync runs
            if self._resumed:
                # A resume refetches the checkpoint's page, whose first contacts may have
                # been stored and counted before the crash: count what was stored instead.
                await self._recount(session, run)
            run.status, run.finished_at, run.error = RunStatus.DONE, utcnow(), None
            await mark_synced(session, account_id)
            await clear_problem(session, account_id, *CLEARED_BY_SYNC)
            await RECONCILE.enqueue(session, AccountJob(account_id))

    async def _waiting(self, exc: BaseException) -> None:
        """The run waits out amoCRM's block: it stays running and says why it stopped."""
        async with transaction(self.services.sessions) as session:
            await session.execute(
                update(SyncRun)
                .where(SyncRun.id == self.run_id, SyncRun.status == RunStatus.RUNNING)
                .values(error=describe(exc), updated_at=utcnow())
            )

    async def _fail(self, exc: BaseException) -> None:
        message = describe(exc)
        async with transaction(self.services.sessions) as session:
            run = await session.get(SyncRun, self.run_id)
            if run is None:
                return
            run.status, run.error, run.finished_at = RunStatus.FAILED, message, utcnow()
            await note_failure(session, run.account_id, exc)
        log.warning("sync.failed", run_id=self.run_id, error=message)
