"""The write-back job: each unsubscribe received becomes the tag `consent.tag` and, when
`consent.note`, one `common` note on every amoCRM contact of the account holding the address.

Idempotent: an event is stored once (a redelivery is the same row), and what was written
to each contact is recorded as it is written (`consent_writes`), so a retried job skips it.
A tag added twice is one tag, but a note posted twice is two: a note whose recording may
have been lost (the job stopped between the POST and the record, or the POST's answer never
came) is looked for in amoCRM first (`GET /api/v4/contacts/notes`, the contact's `common`
notes since the event arrived, matched by their text) and only posted when it is not there.
Calls go through the account's amoCRM client, hence its rate limit and its retries; a
failure leaves the event pending and the job is retried like any other. A workflow that
commits between upstream calls: each write is recorded as soon as amoCRM took it. An address no
contact holds any more is recorded (`no_contact`) and skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import structlog

from amosync.accounts.tokens import amocrm_client
from amosync.consent import repository
from amosync.consent.settings import consent_settings
from amosync.consent.tasks import CONSENT
from amosync.db.engine import transaction
from amosync.db.models import (
    Account,
    AccountStatus,
    ConsentEvent,
    ConsentStatus,
)
from amosync.errors import PermanentUpstreamError, TransientUpstreamError
from amosync.runtime.services import Services

if TYPE_CHECKING:
    from amosync.amocrm.client import AmoCRMClient
    from amosync.worker.context import JobContext

log = structlog.get_logger()

BATCH = 200  # events written back together
# How many times a notes POST is tried in place; between tries amoCRM is asked which of
# the notes the failed one created after all.
NOTE_ATTEMPTS = 4
# Our clock and amoCRM's may differ: notes are looked for from this long before the event
# arrived (a note of it cannot be older than its arrival).
CLOCK_SLACK = timedelta(hours=1)

# amoCRM's international hosts speak English; amocrm.ru (the default) Russian.
ENGLISH_HOSTS = ("kommo.com", "amocrm.com")

NOTE = {
    "ru": (
        "Адрес {email} отписался от рассылки в Unisender (список {list}), {time}. "
        "Не отправляйте на него письма без нового согласия."
    ),
    "en": (
        "{email} unsubscribed in Unisender (list {list}) at {time}. "
        "Do not email this address without new consent."
    ),
}


def language(base_url: str | None) -> str:
    host = (urlsplit(base_url or "").hostname or "").lower()
    return "en" if any(host == h or host.endswith("." + h) for h in ENGLISH_HOSTS) else "ru"


def event_time(event: ConsentEvent) -> str:
    """The time Unisender gave (its "YYYY-MM-DD HH:MM:SS" is UTC), or when it arrived."""
    raw = (event.event_time or "").strip()
    if raw.isdigit():
        moment = datetime.fromtimestamp(int(raw), UTC)
    elif raw:
        return raw if raw.endswith(("UTC", "Z")) or "+" in raw else f"{raw} UTC"
    else:
        moment = event.received_at
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def note_text(event: ConsentEvent, lang: str) -> str:
    list_name = str(event.list_id) if event.list_id is not None else "—"
    return NOTE[lang].format(email=event.email, list=list_name, time=event_time(event))


@CONSENT.runs
async def run_consent(ctx: JobContext) -> None:
    """Handle the account's pending events, oldest first."""
    assert ctx.account_id is not None
    await write_back(ctx.services, ctx.account_id)


async def write_back(services: Services, account_id: int) -> int:
    """Returns how many events were handled.

    The pending events are taken together, up to `BATCH` at a time: one `PATCH` tags every
    contact they name and one `POST` adds their notes (amoCRM takes 250 of either a
    request), so a burst of unsubscribes costs a few calls, within the account's rate
    limit, rather than two per event.
    """
    handled = 0
    client: AmoCRMClient | None = None
    while True:
        async with services.sessions() as session:
            account = await session.get(Account, account_id)
            if account is None or account.status == AccountStatus.DISCONNECTED:
                return handled
            base_url = await repository.base_url(session, account_id)
            events = await repository.pending_events(session, account_id, BATCH)
            holders = await repository.holders(session, account_id, (e.email for e in events))
            done = await repository.written(session, [event.id for event in events])
        if not events:
            return handled
        settings = consent_settings(account.settings)
        if not settings.enabled:
            await _finish(services, [(event, ConsentStatus.DISABLED, []) for event in events])
            handled += len(events)
            continue
        if client is None:
            client = await amocrm_client(services, account_id)
        await _write(
            services, client, events, holders, done, settings.tag, settings.note, language(base_url)
        )
        handled += len(events)


async def _write(
    services: Services,
    client: AmoCRMClient,
    events: Sequence[ConsentEvent],
    holders: dict[str, list[int]],
    done: repository.Written,
    tag: str,
    note: bool,
    lang: str,
) -> None:
    pairs = [(event, amocrm_id) for event in events for amocrm_id in holders.get(event.email, [])]
    untagged = [(e, i) for e, i in pairs if not ((w := done.get((e.id, i))) and w.tagged)]
    # One tag per contact is enough, whichever of the events asked for it.
    gone = await _split(client.add_tags, sorted({i for _, i in untagged}), tag)
    await _record(services, [(e.id, i) for e, i in untagged if i not in gone], tagged=True)
    if note:
        unnoted = [
            (e, i)
            for e, i in pairs
            if i not in gone and not ((w := done.get((e.id, i))) and w.noted)
        ]
        texts = {event.id: note_text(event, lang) for event in events}
        since = _since(events)
        # A pair with a record from an earlier attempt was at least tagged then, so that
        # attempt may have posted its note before stopping.
        tried = [(e, i) for e, i in unnoted if (e.id, i) in done]
        if tried:
            present = await _present(client, [(i, texts[e.id]) for e, i in tried], since)
            there = [(e, i) for e, i in tried if (i, texts[e.id].strip()) in present]
            await _record(services, [(e.id, i) for e, i in there], noted=True)
            unnoted = [pair for pair in unnoted if pair not in there]
        gone |= await _post_notes(client, [(i, texts[e.id]) for e, i in unnoted], since)
        await _record(services, [(e.id, i) for e, i in unnoted if i not in gone], noted=True)
    outcomes = []
    for event in events:
        written = [str(i) for i in holders.get(event.email, []) if i not in gone]
        outcomes.append(
            (event, ConsentStatus.DONE if written else ConsentStatus.NO_CONTACT, written)
        )
    await _finish(services, outcomes)
    log.info(
        "consent.written",
        account_id=events[0].account_id,
        events=len(events),
        contacts=len({i for _, i in pairs} - gone),
    )


def _refused_for_one(exc: PermanentUpstreamError) -> bool:
    """amoCRM refuses the whole request (400/404) when one contact in it is gone."""
    return exc.status in (400, 404)


async def _split(
    call: Callable[[Sequence[int], str], Awaitable[None]], contact_ids: Sequence[int], tag: str
) -> set[int]:
    """Tag the contacts; returns those amoCRM no longer has (a batch refused for one of
    them is split until the refused contact is alone)."""
    if not contact_ids:
        return set()
    try:
        await call(contact_ids, tag)
        return set()
    except PermanentUpstreamError as exc:
        if not _refused_for_one(exc):
            raise
        if len(contact_ids) == 1:
            log.info("consent.contact_gone", amocrm_id=contact_ids[0])
            return {contact_ids[0]}
    middle = len(contact_ids) // 2
    return await _split(call, contact_ids[:middle], tag) | await _split(
        call, contact_ids[middle:], tag
    )


def _since(events: Sequence[ConsentEvent]) -> int:
    """Unix seconds from which the notes of these events can be in amoCRM."""
    earliest = min(event.received_at for event in events)
    if earliest.tzinfo is None:  # SQLite hands back naive UTC
        earliest = earliest.replace(tzinfo=UTC)
    return int((earliest - CLOCK_SLACK).timestamp())


async def _present(
    client: AmoCRMClient, notes: Sequence[tuple[int, str]], since: int
) -> set[tuple[int, str]]:
    """Which of the (contact, text) notes amoCRM already has."""
    found = await client.contact_notes(
        sorted({contact_id for contact_id, _ in notes}), note_type="common", updated_since=since
    )
    return {(note.entity_id, note.text.strip()) for note in found if note.text is not None}


async def _post_notes(
    client: AmoCRMClient, notes: Sequence[tuple[int, str]], since: int
) -> set[int]:
    """Add the notes, each once: a POST that fails on the way is not repeated blindly (its
    notes may be there, its answer lost) but for the notes amoCRM does not have. Returns
    the contacts amoCRM no longer has."""
    for attempt in range(1, NOTE_ATTEMPTS + 1):
        try:
            return await _split_notes(client, notes)
        except TransientUpstreamError:
            if attempt == NOTE_ATTEMPTS:
                raise
            await asyncio.sleep(0.5 * 2 ** (attempt - 1))
            present = await _present(client, notes, since)
            notes = [(i, text) for i, text in notes if (i, text.strip()) not in present]
            log.info("consent.notes.retried", attempt=attempt, left=len(notes))
    raise AssertionError("unreachable")  # pragma: no cover


async def _split_notes(client: AmoCRMClient, notes: Sequence[tuple[int, str]]) -> set[int]:
    """Add the notes; returns the contacts amoCRM no longer has (split as above)."""
    if not notes:
        return set()
    try:
        await client.add_notes(notes, retry=False)
        return set()
    except PermanentUpstreamError as exc:
        if not _refused_for_one(exc):
            raise
        if len(notes) == 1:
            return {notes[0][0]}
    middle = len(notes) // 2
    return await _split_notes(client, notes[:middle]) | await _split_notes(client, notes[middle:])


async def _record(
    services: Services,
    pairs: Sequence[tuple[int, int]],
    *,
    tagged: bool = False,
    noted: bool = False,
) -> None:
    """Remember what was written to each (event, contact), as soon as it was written."""
    if not pairs:
        return
    async with transaction(services.sessions) as session:
        await repository.record_written(session, pairs, tagged=tagged, noted=noted)


async def _finish(
    services: Services, outcomes: Sequence[tuple[ConsentEvent, ConsentStatus, list[str]]]
) -> None:
    async with transaction(services.sessions) as session:
        await repository.finish_events(session, outcomes)
