"""The account's Unisender hook: set when the key is connected, checked at every
reconciliation pass, removed on disconnect (SPEC §9).

The hook URL is `{PUBLIC_URL}/unisender/webhook?token=<secret>`, the secret the account's
own (apart from the amoCRM webhook's). Unisender stops a hook after a day of failed
deliveries; the pass finds it stopped in `listHooks`, sets it active again and shows
`unisender_hook_stopped` until a later pass finds it active.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from sqlalchemy import update

from amosync.accounts.problems import ProblemCode, clear_problem, set_problem
from amosync.accounts.unisender import account_client
from amosync.crypto import new_token, token_hash
from amosync.db.engine import transaction
from amosync.db.models import Account
from amosync.errors import InvalidApiKey, PermanentUpstreamError
from amosync.state import Services

if TYPE_CHECKING:
    from amosync.worker.runner import JobContext

log = structlog.get_logger()

EVENTS = ("unsubscribe",)


def hook_url(services: Services, token: str) -> str | None:
    base = services.settings.webhook_base_url
    return f"{base}/unisender/webhook?token={token}" if base else None


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
    async with services.sessions() as session:
        account = await session.get(Account, account_id)
    if (
        account is None
        or account.status != "active"
        or account.unisender_key_enc is None
        or not account.unisender_valid
    ):
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


async def run_ensure_hook(ctx: JobContext) -> None:
    """The job queued when a key is connected."""
    assert ctx.account_id is not None
    await ensure_hook(ctx.services, ctx.account_id)


async def remove_hook_quietly(services: Services, account_id: int) -> None:
    """Disconnect: remove the hook, best effort (the key is deleted right after, and
    deliveries that still come are acknowledged and ignored)."""
    try:
        async with services.sessions() as session:
            account = await session.get(Account, account_id)
        if account is None or account.unisender_key_enc is None:
            return
        if account.unisender_hook_token_enc is None:
            return
        url = hook_url(services, services.cipher.decrypt(account.unisender_hook_token_enc))
        if url is not None:
            await account_client(services, account).remove_hook(url)
    except InvalidApiKey:
        pass  # the key is dead: so is its hook
    except Exception as exc:
        log.warning("consent.hook.remove_failed", account_id=account_id, error=type(exc).__name__)
    async with transaction(services.sessions) as session:
        await session.execute(
            update(Account)
            .where(Account.id == account_id)
            .values(unisender_hook_token_hash=None, unisender_hook_token_enc=None)
        )
        await clear_problem(session, account_id, ProblemCode.unisender_hook_stopped)
