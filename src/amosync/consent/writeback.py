"""The write-back job: each unsubscribe received becomes the tag `consent.tag` and, when
`consent.note`, one `common` note on every amoCRM contact of the account holding the address.

Idempotent: an event is stored once (a redelivery is the same row), and what was written
to each contact is recorded as it is written (`consent_writes`), so a retried job skips it.
Calls go through the account's amoCRM client, hence its rate limit and its retries; a
failure leaves the event pending and the job is retried like any other. An address no
contact holds any more is recorded (`no_contact`) and skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import structlog
from sqlalchemy import select, update

from amosync.accounts.tokens import amocrm_client
from amosync.consent.settings import consent_settings
from amosync.db.engine import dialect_name, insert_for, transaction
from amosync.db.models import Account, ConsentEvent, ConsentWrite, Integration, ListedEmail, utcnow
from amosync.errors import PermanentUpstreamError
from amosync.state import Services

if TYPE_CHECKING:
    from amosync.amocrm.client import AmoCRMClient
    from amosync.worker.runner import JobContext

log = structlog.get_logger()

BATCH = 50  # events handled per transaction of bookkeeping

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


async def run_consent(ctx: JobContext) -> None:
    """Handle the account's pending events, oldest first."""
    assert ctx.account_id is not None
    await write_back(ctx.services, ctx.account_id)


async def write_back(services: Services, account_id: int) -> int:
    """Returns how many events were handled."""
    handled = 0
    client: AmoCRMClient | None = None
    while True:
        async with services.sessions() as session:
            account = await session.get(Account, account_id)
            if account is None or account.status == "disconnected":
                return handled
            base_url = await session.scalar(
                select(Integration.base_url).where(Integration.account_id == account_id).limit(1)
            )
            events = list(
                (
                    await session.execute(
                        select(ConsentEvent)
                        .where(
                            ConsentEvent.account_id == account_id,
                            ConsentEvent.status == "pending",
                        )
                        .order_by(ConsentEvent.id)
                        .limit(BATCH)
                    )
                ).scalars()
            )
        if not events:
            return handled
        settings = consent_settings(account.settings)
        if not settings.enabled:
            await _finish(services, [(event, "disabled", []) for event in events])
            handled += len(events)
            continue
        if client is None:
            client = await amocrm_client(services, account_id)
        for event in events:
            await _one(services, client, event, settings.tag, settings.note, language(base_url))
            handled += 1


async def _one(
    services: Services,
    client: AmoCRMClient,
    event: ConsentEvent,
    tag: str,
    note: bool,
    lang: str,
) -> None:
    async with services.sessions() as session:
        holders = sorted(
            (
                await session.execute(
                    select(ListedEmail.amocrm_id).where(
                        ListedEmail.account_id == event.account_id,
                        ListedEmail.email == event.email,
                    )
                )
            ).scalars()
        )
        done = {
            row.amocrm_id: row
            for row in (
                await session.execute(select(ConsentWrite).where(ConsentWrite.event_id == event.id))
            ).scalars()
        }
    if not holders:
        log.info("consent.no_contact", account_id=event.account_id)
        await _finish(services, [(event, "no_contact", [])])
        return
    untagged = [
        amocrm_id for amocrm_id in holders if not (done.get(amocrm_id) and done[amocrm_id].tagged)
    ]
    gone: set[int] = set()
    if untagged:
        gone |= await _tag(client, untagged, tag)
        await _record(services, event.id, [i for i in untagged if i not in gone], tagged=True)
    if note:
        unnoted = [
            amocrm_id
            for amocrm_id in holders
            if amocrm_id not in gone and not (done.get(amocrm_id) and done[amocrm_id].noted)
        ]
        if unnoted:
            text = note_text(event, lang)
            await client.add_notes([(amocrm_id, text) for amocrm_id in unnoted])
            await _record(services, event.id, unnoted, noted=True)
    written = [str(amocrm_id) for amocrm_id in holders if amocrm_id not in gone]
    await _finish(services, [(event, "done" if written else "no_contact", written)])
    log.info("consent.written", account_id=event.account_id, contacts=len(written))


async def _tag(client: AmoCRMClient, contact_ids: Sequence[int], tag: str) -> set[int]:
    """Tag the contacts; returns those amoCRM no longer has (a batch refused for one of
    them is split until the refused contact is alone)."""
    try:
        await client.add_tags(contact_ids, tag)
        return set()
    except PermanentUpstreamError as exc:
        if exc.status not in (400, 404):
            raise
        if len(contact_ids) == 1:
            log.info("consent.contact_gone", amocrm_id=contact_ids[0])
            return {contact_ids[0]}
    middle = len(contact_ids) // 2
    return await _tag(client, contact_ids[:middle], tag) | await _tag(
        client, contact_ids[middle:], tag
    )


async def _record(
    services: Services,
    event_id: int,
    contact_ids: Sequence[int],
    *,
    tagged: bool = False,
    noted: bool = False,
) -> None:
    if not contact_ids:
        return
    async with transaction(services.sessions) as session:
        insert = insert_for(dialect_name(session))
        values = [
            {"event_id": event_id, "amocrm_id": amocrm_id, "tagged": tagged, "noted": noted}
            for amocrm_id in contact_ids
        ]
        statement = insert(ConsentWrite).values(values)
        changed = (
            {"tagged": statement.excluded.tagged} if tagged else {"noted": statement.excluded.noted}
        )
        await session.execute(
            statement.on_conflict_do_update(index_elements=["event_id", "amocrm_id"], set_=changed)
        )


async def _finish(
    services: Services, outcomes: Sequence[tuple[ConsentEvent, str, list[str]]]
) -> None:
    async with transaction(services.sessions) as session:
        now = utcnow()
        for event, status, contact_ids in outcomes:
            await session.execute(
                update(ConsentEvent)
                .where(ConsentEvent.id == event.id)
                .values(status=status, contact_ids=contact_ids, processed_at=now)
            )
