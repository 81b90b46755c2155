"""What each kind of job does."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from amosync.accounts.install import run_install, run_register_webhooks
from amosync.db.engine import transaction
from amosync.db.models import Account, SyncRun, utcnow
from amosync.sync.changes import apply_pending
from amosync.sync.fullsync import RECONCILE_EVERY, FullSync
from amosync.sync.reconcile import reconcile
from amosync.worker.queue import enqueue
from amosync.worker.runner import Handler, JobContext


async def full_sync(ctx: JobContext) -> None:
    await FullSync(ctx.services, int(ctx.payload["run_id"])).run(
        final_attempt=ctx.attempts >= ctx.max_attempts
    )


async def changes(ctx: JobContext) -> None:
    assert ctx.account_id is not None
    await apply_pending(ctx.services, ctx.account_id)


async def reconcile_account(ctx: JobContext) -> None:
    assert ctx.account_id is not None
    async with ctx.services.sessions() as session:
        account = await session.get(Account, ctx.account_id)
        running = await session.scalar(
            select(SyncRun.id).where(
                SyncRun.account_id == ctx.account_id, SyncRun.status.in_(("queued", "running"))
            )
        )
    if account is None or account.status != "active" or account.unisender_key_enc is None:
        return
    if running is None:
        started = utcnow()
        since = account.reconciled_at or started - timedelta(seconds=RECONCILE_EVERY)
        await reconcile(ctx.services, ctx.account_id, since=since)
        async with transaction(ctx.services.sessions) as session:
            await session.execute(
                update(Account).where(Account.id == ctx.account_id).values(reconciled_at=started)
            )
    async with transaction(ctx.services.sessions) as session:
        await enqueue(
            session,
            "reconcile",
            account_id=ctx.account_id,
            dedupe_key=f"reconcile:{ctx.account_id}",
            delay=RECONCILE_EVERY,
        )


HANDLERS: dict[str, Handler] = {
    "install": run_install,
    "webhooks": run_register_webhooks,
    "full_sync": full_sync,
    "changes": changes,
    "reconcile": reconcile_account,
}
