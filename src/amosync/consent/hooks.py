"""The account's Unisender hook: set when the key is connected, checked at every
reconciliation pass, removed on disconnect (SPEC §9).

The hook URL is `{PUBLIC_URL}/unisender/webhook?token=<secret>`, the secret the account's
own (apart from the amoCRM webhook's). Unisender stops a hook after a day of failed
deliveries; the pass finds it stopped in `listHooks`, sets it active again and shows
`unisender_hook_stopped` until a later pass finds it active.

A key replaced by another (or removed) leaves its hook behind at Unisender unless we remove
it with that key: a job of its own does, with the old key kept encrypted in the job's payload
until then. Failing to remove it never holds up the new key; it is shown as
`unisender_hook_not_removed` until a retry of that job succeeds.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import structlog

from amosync.accounts.problems import ProblemCode, clear_problem, set_problem
from amosync.accounts.service import read_active
from amosync.accounts.unisender import account_client, hook_url, unisender_client
from amosync.consent.tasks import UNISENDER_HOOK, UNISENDER_HOOK_REMOVE
from amosync.db.engine import transaction
from amosync.db.models import Account, utcnow
from amosync.errors import AppError, InvalidApiKey, PermanentUpstreamError, UpstreamError
from amosync.runtime.crypto import new_token, token_hash
from amosync.runtime.services import Services

if TYPE_CHECKING:
    from amosync.unisender.client import UnisenderClient
    from amosync.worker.context import JobContext

log = structlog.get_logger()

EVENTS = ("unsubscribe",)


async def _token(services: Services, account_id: int) -> str | None:
    """The account's hook secret, made on first use; None for an account that is gone."""
    async with transaction(services.sessions) as session:
        account = await session.get(Account, account_id, with_for_update=True)
        if account is None:
            return None
        if account.unisender_hook_token_enc is None:
            token = new_token()
            account.unisender_hook_token_hash = token_hash(token)
            account.unisender_hook_token_enc = services.cipher.encrypt(token)
            return token
        return services.cipher.decrypt(account.unisender_hook_token_enc)


async def ensure_hook(services: Services, account_id: int) -> ProblemCode | None:
    """Make sure the account's key has our hook, active; returns the problem found."""
    account = await read_active(services, account_id)
    if account is None or account.unisender_key_enc is None or not account.unisender_valid:
        return None
    token = await _token(services, account_id)
    url = hook_url(services, token) if token else None
    if url is None:
        return None  # no public address to give Unisender
    client = account_client(services, account)
    hooks = [hook for hook in await client.list_hooks() if hook.hook_url == url]
    if hooks and all(hook.active for hook in hooks):
        async with transaction(services.sessions) as session:
            await clear_problem(session, account_id, ProblemCode.unisender_hook_stopped)
        return None
    await client.set_hook(url, EVENTS)
    if not hooks:
        log.info("consent.hook.set", account_id=account_id)
        return None
    log.warning("consent.hook.reactivated", account_id=account_id)
    async with transaction(services.sessions) as session:
        await set_problem(
            session,
            account_id,
            ProblemCode.unisender_hook_stopped,
            "Unisender stopped amosync's hook after a day of failed deliveries, so "
            "unsubscribes stopped reaching amoCRM; amosync set it active again: check that "
            f"Unisender can reach {services.settings.webhook_base_url} if this comes back",
        )
    return ProblemCode.unisender_hook_stopped


async def check_hook(services: Services, account_id: int) -> ProblemCode | None:
    """`ensure_hook` for the reconciliation pass: a hook call Unisender refuses for good
    (other than for the key, which marks the account) is logged and the pass goes on, as
    an unreadable webhook list at amoCRM is: it says nothing of the contacts to reconcile."""
    try:
        return await ensure_hook(services, account_id)
    except InvalidApiKey:
        raise
    except PermanentUpstreamError as exc:
        log.warning("consent.hook.unchecked", account_id=account_id, error=str(exc))
        return None


@UNISENDER_HOOK.runs
async def run_ensure_hook(ctx: JobContext) -> None:
    """The job queued when a key is connected."""
    assert ctx.account_id is not None
    await ensure_hook(ctx.services, ctx.account_id)


class HookNotRemoved(AppError):
    """The replaced key's hook is still at Unisender (the job ends failed, retryable)."""

    status = 409
    code = "unisender_hook_not_removed"


# The hook a replaced key keeps can write nothing here any more (its token is retired), so
# the problem is a reminder to tidy that Unisender account, which amosync can no longer see.
NOT_REMOVED_SHOWN = timedelta(days=7)


@UNISENDER_HOOK_REMOVE.runs
async def run_remove_old_hook(ctx: JobContext) -> None:
    """The job queued when a key is replaced or removed: `removeHook` with the OLD key, for
    the URL of the token retired with it (payload from `accounts.unisender.retire_hook`)."""
    assert ctx.account_id is not None
    services = ctx.services
    old_key, old_token = ctx.payload.get("key"), ctx.payload.get("token")
    if not isinstance(old_key, str) or not isinstance(old_token, str):
        return
    url = hook_url(services, services.cipher.decrypt(old_token))
    if url is not None:
        await _remove_old(ctx, unisender_client(services, services.cipher.decrypt(old_key)), url)
    async with transaction(services.sessions) as session:
        await clear_problem(session, ctx.account_id, ProblemCode.unisender_hook_not_removed)
    # Done with the old key: it does not stay in the jobs table.
    await ctx.save_payload({})


async def _remove_old(ctx: JobContext, client: UnisenderClient, url: str) -> None:
    assert ctx.account_id is not None
    try:
        await client.remove_hook(url)
        log.info("consent.hook.old_removed", account_id=ctx.account_id)
        return
    except InvalidApiKey as exc:
        # Not raised as such: the worker would take it for the current key's refusal.
        said = "Unisender refuses the replaced key"
        error: UpstreamError = exc
    except PermanentUpstreamError as exc:
        said = "Unisender refused to remove it"
        error = exc
    except UpstreamError as exc:
        if ctx.attempts < ctx.max_attempts:
            raise  # retried like any other work
        said = "Unisender did not answer"
        error = exc
    log.warning("consent.hook.old_not_removed", account_id=ctx.account_id, error=error.message)
    detail = (
        f"amosync could not remove its hook from the Unisender account of the replaced key "
        f"({said}: {error.message[:200]}). That hook can no longer write to amoCRM; delete "
        f"the hook to {ctx.services.settings.webhook_base_url}/unisender/webhook in that "
        "account's Unisender settings, or retry the failed job."
    )
    async with transaction(ctx.services.sessions) as session:
        await set_problem(
            session,
            ctx.account_id,
            ProblemCode.unisender_hook_not_removed,
            detail,
            until=utcnow() + NOT_REMOVED_SHOWN,
        )
    raise HookNotRemoved(detail) from error
