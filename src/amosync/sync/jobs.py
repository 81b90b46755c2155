"""What the sync jobs do (declared in `sync/tasks.py`).

Apart from the declarations: the workflows run here queue these kinds themselves (a full
sync queues the periodic pass), so the declarations must import none of them."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from amosync.accounts.repository import has_pending_changes
from amosync.consent.hooks import check_hook
from amosync.consent.tasks import CONSENT
from amosync.db.engine import transaction
from amosync.db.models import (
    Account,
    AccountStatus,
    ConsentEvent,
    ConsentStatus,
    PendingLead,
    RunStatus,
    SyncRun,
    utcnow,
)
from amosync.errors import is_permanent, root_cause
from amosync.sync.changes import apply_pending
from amosync.sync.fullsync import FullSync
from amosync.sync.reconcile import check_webhooks, reconcile
from amosync.sync.service import start_run
from amosync.sync.tasks import CHANGES, FULL_SYNC, RECONCILE, RECONCILE_EVERY
from amosync.worker.context import JobContext
from amosync.worker.tasks import AccountJob


@FULL_SYNC.runs
async def full_sync(ctx: JobContext) -> None:
    run_id = int(FULL_SYNC.load(ctx).run_id)
    if ctx.account_id is not None and await _run_failed(ctx, run_id):
        # The job of a failed run was retried (the dashboard's "Retry"): sync again, as a
        # new run, rather than skip the failed one.
        async with transaction(ctx.services.sessions) as session:
            run, _ = await start_run(session, ctx.account_id, queue=False)
        run_id = run.id
        await ctx.save_payload({**ctx.payload, "run_id": run_id})
    await FullSync(ctx.services, run_id).run(final_attempt=ctx.attempts >= ctx.max_attempts)


async def _run_failed(ctx: JobContext, run_id: int) -> bool:
    async with ctx.services.sessions() as session:
        status = await session.scalar(select(SyncRun.status).where(SyncRun.id == run_id))
    return status == RunStatus.FAILED


@CHANGES.runs
async def changes(ctx: JobContext) -> None:
    assert ctx.account_id is not None
    if await _key_refused(ctx, ctx.account_id):
        # Unisender refused the key: the changes wait (kept) until a key is connected,
        # which queues this job again.
        return
    await apply_pending(ctx.services, ctx.account_id)


async def _key_refused(ctx: JobContext, account_id: int) -> bool:
    async with ctx.services.sessions() as session:
        row = (
            await session.execute(
                select(Account.unisender_key_enc.is_not(None), Account.unisender_valid).where(
                    Account.id == account_id
                )
            )
        ).first()
    return row is not None and bool(row[0]) and not row[1]


@RECONCILE.runs
async def reconcile_account(ctx: JobContext) -> None:
    """The periodic pass (reconcile.py), then the next one is queued.

    The chain must survive failures: when this job fails for good (an outage longer than
    its retries, a permanent error), the next pass is queued all the same.
    """
    assert ctx.account_id is not None
    try:
        await _reconcile_once(ctx, ctx.account_id)
    except Exception as exc:
        permanent = is_permanent(root_cause(exc))
        if permanent or ctx.attempts >= ctx.max_attempts:
            await _next_pass(ctx, ctx.account_id)
        raise
    await _next_pass(ctx, ctx.account_id)


async def _reconcile_once(ctx: JobContext, account_id: int) -> None:
    async with ctx.services.sessions() as session:
        account = await session.get(Account, account_id)
        running = await session.scalar(
            select(SyncRun.id).where(
                SyncRun.account_id == account_id,
                SyncRun.status.in_((RunStatus.QUEUED, RunStatus.RUNNING)),
            )
        )
    if account is None or account.status != AccountStatus.ACTIVE:
        return
    # amoCRM side first: a webhook lost or disabled is registered again whatever the key.
    await check_webhooks(ctx.services, account_id)
    if (
        account.unisender_key_enc is None
        # Unisender refused the key: nothing to do with it until a new one is connected.
        or not account.unisender_valid
    ):
        return
    # Unisender side: our hook set and active (a stopped one is set active again).
    await check_hook(ctx.services, account_id)
    if running is None:
        started = utcnow()
        since = account.reconciled_at or started - timedelta(seconds=RECONCILE_EVERY)
        await reconcile(ctx.services, account_id, since=since)
        async with transaction(ctx.services.sessions) as session:
            await session.execute(
                update(Account).where(Account.id == account_id).values(reconciled_at=started)
            )


async def _next_pass(ctx: JobContext, account_id: int) -> None:
    async with transaction(ctx.services.sessions) as session:
        account = await session.get(Account, account_id)
        if account is None or account.status == AccountStatus.DISCONNECTED:
            return
        # Webhook changes whose job failed for good (a long Unisender outage) are not
        # forgotten: every pass queues them again.
        left = await has_pending_changes(session, account_id) or (
            await session.scalar(
                select(PendingLead.lead_id).where(PendingLead.account_id == account_id).limit(1)
            )
            is not None
        )
        if left:
            await CHANGES.enqueue(session, AccountJob(account_id))
        # Unsubscribes whose write-back failed for good are tried again too.
        waiting = await session.scalar(
            select(ConsentEvent.id)
            .where(
                ConsentEvent.account_id == account_id, ConsentEvent.status == ConsentStatus.PENDING
            )
            .limit(1)
        )
        if waiting is not None:
            await CONSENT.enqueue(session, AccountJob(account_id))
        await RECONCILE.enqueue(session, AccountJob(account_id))
