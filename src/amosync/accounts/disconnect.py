"""Disconnecting an account: amoCRM stops calling us, we stop calling anyone for it.

Tokens and the Unisender key are deleted, pending work is dropped and the status becomes
`disconnected`; the synced/unsynced records stay for the operator. Unregistering the
webhooks needs the tokens, so it is tried right away (best effort, with the client's own
retries) before they are deleted; webhooks that still arrive afterwards are acknowledged and
ignored.
"""

from __future__ import annotations

import hashlib
import hmac

import structlog

from amosync.accounts import repository, service
from amosync.accounts.install import unregister_webhooks
from amosync.accounts.unisender import remove_hook_quietly
from amosync.db.engine import transaction
from amosync.errors import Forbidden
from amosync.runtime.services import Services
from amosync.worker.queue import drop_pending

log = structlog.get_logger()


async def disconnect(services: Services, account_id: int) -> None:
    """Raises NotFound for an unknown account.

    A workflow that owns its transactions, unlike the services: the vendors are called
    first, each in its own time and outside any transaction, and what is forgotten is
    committed at the end in one."""
    async with services.sessions() as session:
        await service.require(session, account_id)
    await unregister_quietly(services, account_id)
    await remove_hook_quietly(services, account_id)
    async with transaction(services.sessions) as session:
        await repository.forget(session, account_id)
        await drop_pending(session, account_id)
    log.info("account.disconnected", account_id=account_id)


async def unregister_quietly(services: Services, account_id: int) -> None:
    """Unregister the account's webhooks, best effort."""
    try:
        await unregister_webhooks(services, account_id)
    except Exception as exc:
        # Whatever went wrong: amoCRM also drops the webhooks of an uninstalled
        # integration, and ours are ignored from now on anyway.
        log.warning("webhooks.unregister_failed", account_id=account_id, error=type(exc).__name__)


def check_signature(secret: str, client_uuid: str, account_id: str, signature: str) -> None:
    """amoCRM's disconnect hook: hex HMAC-SHA256 of `client_uuid|account_id`."""
    expected = hmac.new(
        secret.encode(), f"{client_uuid}|{account_id}".encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
        raise Forbidden("the signature does not match", code="invalid_signature")
