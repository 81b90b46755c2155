"""Storing an account's settings (SPEC §8, §9) and what follows a change: a full sync when
what goes to Unisender changed, the amoCRM webhook's events when lead rules come or go.

Services never commit: the request owns the transaction, so the run, the webhook job and
the settings are stored together or not at all.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from amosync.db.models import Account, SyncRun
from amosync.errors import AppError
from amosync.segments import validate
from amosync.segments.schemas import SavedSettings
from amosync.segments.settings import AccountSettings, account_settings
from amosync.state import Services
from amosync.sync import service as sync
from amosync.sync.schemas import SyncStarted
from amosync.worker.queue import enqueue

log = structlog.get_logger()


def parse(value: Any) -> AccountSettings:
    """`value` (the `settings` of `PUT /accounts/{id}`) read as the settings route reads its
    body; 422 `invalid_settings` otherwise."""
    try:
        return AccountSettings.model_validate(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error.get("loc", ())) or "settings"
        raise AppError(
            f"settings.{where}: {error.get('msg', 'invalid value')}",
            code="invalid_settings",
            status=422,
        ) from None


def can_sync(account: Account) -> bool:
    """Whether a full sync could run now: a key and a list (the key's connection starts the
    first sync, with whatever settings are stored by then)."""
    return (
        account.status != "disconnected"
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
    before = account_settings(account.settings)
    stored = dict(account.settings) if isinstance(account.settings, dict) else {}
    stored.update(settings.model_dump(mode="json", include=set(parts)))
    account.settings = stored
    after = account_settings(stored)
    run: SyncRun | None = None
    queued = False
    if after.sync_part() != before.sync_part() and can_sync(account):
        # The same start as POST /sync: one active run per account, joined if one is.
        run, queued = await sync.start_full_sync(session, account.id)
    if after.wants_leads != before.wants_leads:
        # amoCRM is called by the job, after the commit: the settings it reads are these.
        await enqueue(
            session, "webhooks", account_id=account.id, dedupe_key=f"webhooks:{account.id}"
        )
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
