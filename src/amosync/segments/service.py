"""Storing an account's settings (SPEC §8, §9) and what follows a change: a full sync when
what goes to Unisender changed, the amoCRM webhook's events when lead rules come or go.

Services never commit: the request owns the transaction, so the run, the webhook job and
the settings are stored together or not at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from amosync.accounts import runs
from amosync.accounts.schemas import SyncStarted
from amosync.accounts.settings import AccountSettings, account_settings

# `parse` is the accounts' (PUT /accounts reads its settings with it); routes call it here.
from amosync.accounts.settings import parse as parse
from amosync.accounts.tasks import WEBHOOKS
from amosync.accounts.tokens import amocrm_client
from amosync.accounts.unisender import account_lists
from amosync.db.engine import transaction
from amosync.db.models import Account, AccountStatus, RunStatus, SyncRun
from amosync.errors import AppError, TransientUpstreamError, UpstreamError
from amosync.runtime.services import Services
from amosync.segments import validate
from amosync.segments.schemas import (
    Choices,
    FieldChoice,
    ListChoice,
    PipelineChoice,
    SavedSettings,
    StatusChoice,
    TagChoice,
)
from amosync.segments.tasks import RESYNC
from amosync.worker.context import JobContext
from amosync.worker.tasks import AccountJob

log = structlog.get_logger()

# Seconds between looks at a run still active (its job waiting to retry, say).
RESYNC_WAIT = 2.0

T = TypeVar("T")


def can_sync(account: Account) -> bool:
    """Whether a full sync could run now: a key and a list (the key's connection starts the
    first sync, with whatever settings are stored by then)."""
    return (
        account.status != AccountStatus.DISCONNECTED
        and account.unisender_key_enc is not None
        and account.list_id is not None
    )


async def save(
    services: Services,
    session: AsyncSession,
    account: Account,
    settings: AccountSettings,
    parts: Collection[str],
) -> SavedSettings:
    """Check `settings` (`validate.check`), store the `parts` given (the top-level keys the
    caller sent; the others stay as stored), then start what the change needs."""
    await validate.check(services, account, settings, parts)
    # Locked only now, and read again: the vendors' answers can take seconds, and the
    # account's row is what the worker leases the account by.
    await session.refresh(account, with_for_update=True)
    before = account_settings(account.settings)
    stored = dict(account.settings) if isinstance(account.settings, dict) else {}
    stored.update(settings.model_dump(mode="json", include=set(parts)))
    account.settings = stored
    after = account_settings(stored)
    run: SyncRun | None = None
    queued = False
    if after.sync_part() != before.sync_part() and can_sync(account):
        # The same start as POST /sync: one active run per account, joined if one is.
        run, queued = await runs.start_full_sync(session, account.id)
        if not queued and run.status == RunStatus.RUNNING:
            # That run read the settings it started with: another follows it.
            await enqueue_resync(session, account.id)
            queued = True
    if after.wants_leads != before.wants_leads:
        # amoCRM is called by the job, after the commit: the settings it reads are these.
        await WEBHOOKS.enqueue(session, AccountJob(account.id))
        queued = True
    if queued:
        services.notify_work()
    log.info(
        "settings.saved",
        account_id=account.id,
        parts=sorted(parts),
        run_id=run.id if run else None,
        wants_leads=after.wants_leads,
    )
    return SavedSettings(
        fields=after.fields,
        lists=after.lists,
        consent=after.consent,
        sync=SyncStarted(run_id=run.id, status=run.status) if run else None,
    )


async def enqueue_resync(session: AsyncSession, account_id: int, delay: float = 0.0) -> None:
    await RESYNC.enqueue(session, AccountJob(account_id), delay=delay)


@RESYNC.runs
async def run_resync(ctx: JobContext) -> None:
    """The full sync for settings changed while one was running: started once that run is
    over (its job holds the account's lease, so this one comes after), waited for if not."""
    assert ctx.account_id is not None
    async with transaction(ctx.services.sessions) as session:
        if await runs.active_run(session, ctx.account_id) is not None:
            await enqueue_resync(session, ctx.account_id, delay=RESYNC_WAIT)
            return
        account = await session.get(Account, ctx.account_id)
        if account is None or not can_sync(account):
            return
        await runs.start_full_sync(session, ctx.account_id)
    ctx.services.notify_work()


def error_code(exc: Exception) -> str:
    """The code a route would answer `exc` with (see `amosync.app`'s handlers)."""
    if isinstance(exc, AppError):
        return exc.code
    if isinstance(exc, TransientUpstreamError):
        return "upstream_unavailable"
    return "upstream_error"


async def choices(services: Services, account: Account) -> Choices:
    """The account's Unisender lists, amoCRM contact fields, pipelines with statuses and
    contact tags, asked of both vendors at once; a part whose vendor fails is null."""
    errors: dict[str, str] = {}

    async def part(name: str, read: Callable[[], Awaitable[T]]) -> T | None:
        try:
            return await read()
        except (AppError, UpstreamError) as exc:
            log.info("settings.choices.failed", account_id=account.id, part=name, error=str(exc))
            errors[name] = error_code(exc)
            return None

    async def lists() -> list[ListChoice]:
        return [ListChoice(id=i.id, title=i.title) for i in await account_lists(services, account)]

    async def fields() -> list[FieldChoice]:
        client = await amocrm_client(services, account.id)
        return [
            FieldChoice(id=f.id, name=f.name, type=f.type) for f in await client.contact_fields()
        ]

    async def pipelines() -> list[PipelineChoice]:
        client = await amocrm_client(services, account.id)
        return [
            PipelineChoice(
                id=p.id,
                name=p.name,
                statuses=[StatusChoice(id=s.id, name=s.name) for s in p.statuses],
            )
            for p in await client.pipelines()
        ]

    async def tags() -> list[TagChoice]:
        client = await amocrm_client(services, account.id)
        return [TagChoice(id=t.id, name=t.name) for t in await client.contact_tags()]

    found = await asyncio.gather(
        part("lists", lists),
        part("fields", fields),
        part("pipelines", pipelines),
        part("tags", tags),
    )
    return Choices(
        lists=found[0], fields=found[1], pipelines=found[2], tags=found[3], errors=errors
    )
