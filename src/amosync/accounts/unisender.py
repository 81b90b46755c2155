"""An account's Unisender connection: checking a key, finding or creating the list, the
address of our hook there (set by `amosync.consent.hooks`) and its removal on disconnect."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from amosync.accounts import repository
from amosync.accounts.problems import CLEARED_BY_KEY, ProblemCode, clear_problem
from amosync.accounts.tasks import CHANGES, UNISENDER_HOOK, UNISENDER_HOOK_REMOVE, RemoveHookJob
from amosync.db.engine import transaction
from amosync.db.models import Account
from amosync.errors import BadRequest, InvalidApiKey
from amosync.runtime.metrics import observe_upstream
from amosync.runtime.services import Services
from amosync.unisender.client import UnisenderClient
from amosync.unisender.models import MailList
from amosync.upstream.redact import secret_key
from amosync.worker.tasks import AccountJob

log = structlog.get_logger()


def unisender_client(services: Services, api_key: str) -> UnisenderClient:
    """A client for one key, sharing the process's per-key rate limit and connections."""
    settings = services.settings
    limiter = services.limits.get(secret_key("unisender", api_key), settings.unisender_rpm / 60)
    return UnisenderClient(
        settings.unisender_base_url,
        api_key,
        limiter,
        http=services.http,
        observer=observe_upstream,
    )


def account_client(services: Services, account: Account) -> UnisenderClient:
    if account.unisender_key_enc is None:
        raise BadRequest(
            f"account {account.id} has no Unisender key; connect one first",
            code="unisender_not_connected",
        )
    return unisender_client(services, services.cipher.decrypt(account.unisender_key_enc))


async def resolve_list(client: UnisenderClient, list_id: int | None, title: str) -> int:
    """The list to use: `list_id` if the key can see it, else the one titled `title`."""
    lists = await client.get_lists()
    if list_id is not None:
        if not any(item.id == list_id for item in lists):
            raise BadRequest(
                f"Unisender list {list_id} does not exist for this key", code="unknown_list"
            )
        return list_id
    for item in lists:
        if item.title == title:
            return item.id
    return await client.create_list(title)


def _refused() -> BadRequest:
    return BadRequest(
        "Unisender refused this API key; copy it again from Unisender → Settings → API",
        code="invalid_unisender_key",
    )


async def check_key(services: Services, api_key: str, list_id: int | None) -> None:
    """Ask Unisender (getLists) whether it accepts the key and, when given, knows the list.

    Nothing is created at Unisender: a key set by hand keeps whatever list it names.
    """
    client = unisender_client(services, api_key)
    try:
        lists = await client.get_lists()
    except InvalidApiKey as exc:
        raise _refused() from exc
    if list_id is not None and not any(item.id == list_id for item in lists):
        raise BadRequest(
            f"Unisender list {list_id} does not exist for this key", code="unknown_list"
        )


async def connect(
    services: Services,
    session: AsyncSession,
    account: Account,
    api_key: str,
    list_id: int | None,
) -> None:
    """Check the key with getLists, pick the list, store the key encrypted."""
    client = unisender_client(services, api_key)
    try:
        chosen = await resolve_list(client, list_id, services.settings.unisender_list_title)
    except InvalidApiKey as exc:
        raise _refused() from exc
    retired = retire_hook(services, account, api_key)
    account.unisender_key_enc = services.cipher.encrypt(api_key)
    account.unisender_valid = True
    account.unisender_checked_at = datetime.now(UTC)
    account.list_id = chosen
    await session.flush()
    await key_changed(session, account.id, retired=retired)


def retire_hook(services: Services, account: Account, new_key: str | None) -> dict[str, str] | None:
    """Called before `new_key` (None: no key) is stored in place of the account's key.

    The old key's hook stays at Unisender until it is removed with that key, and the new
    key's Unisender account may be another one: the hook's token is retired with the key
    (what the old hook still posts gets 401, a new token is made for the new key's hook),
    and the old key and token are returned for the job that removes the old hook (SPEC §9).
    None when the key stays the same or never had a hook.
    """
    old_key, old_token = account.unisender_key_enc, account.unisender_hook_token_enc
    if old_key is None or old_token is None or services.cipher.decrypt(old_key) == new_key:
        return None
    account.unisender_hook_token_hash = None
    account.unisender_hook_token_enc = None
    return {"key": old_key, "token": old_token}


async def key_changed(
    session: AsyncSession, account_id: int, *, retired: dict[str, str] | None = None
) -> None:
    """A new key is stored: what Unisender said of the old one no longer holds, the old
    key's hook is removed (`retired`, from `retire_hook`), and the webhook changes kept
    while it was refused go out now."""
    await clear_problem(session, account_id, *CLEARED_BY_KEY)
    if retired is not None:
        # One job per replaced key (no dedupe: each carries its own key); a removal that
        # fails is shown as a problem and never holds up the new key's hook.
        await UNISENDER_HOOK_REMOVE.enqueue(
            session,
            RemoveHookJob(account_id, key=retired["key"], token=retired["token"]),
        )
    # The new key gets our hook, so unsubscribes come back to amoCRM (SPEC §9).
    await UNISENDER_HOOK.enqueue(session, AccountJob(account_id))
    if await repository.has_pending_changes(session, account_id):
        await CHANGES.enqueue(session, AccountJob(account_id))


async def account_lists(services: Services, account: Account) -> list[MailList]:
    """The lists the account's stored key sees at Unisender (getLists), for pickers that
    show them by title. A key Unisender refuses is a 400 `invalid_unisender_key`."""
    client = account_client(services, account)
    try:
        return await client.get_lists()
    except InvalidApiKey as exc:
        raise _refused() from exc


def hook_url(services: Services, token: str) -> str | None:
    base = services.settings.webhook_base_url
    return f"{base}/unisender/webhook?token={token}" if base else None


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
        await repository.forget_hook(session, account_id)
        await clear_problem(session, account_id, ProblemCode.unisender_hook_stopped)
