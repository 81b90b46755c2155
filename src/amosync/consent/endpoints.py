"""`POST /unisender/webhook`: Unisender's notifications (SPEC §3, §9)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import select

from amosync.consent.events import unsubscribes
from amosync.consent.tasks import CONSENT
from amosync.db.engine import dialect_name, insert_for
from amosync.db.models import Account, AccountStatus, ConsentEvent, ConsentStatus, utcnow
from amosync.errors import BadRequest, Unauthorized
from amosync.http.auth import url_token, url_token_openapi
from amosync.http.deps import ServicesDep, SessionDep
from amosync.runtime.crypto import token_hash
from amosync.worker.tasks import AccountJob

router = APIRouter()


class HookAccepted(BaseModel):
    accepted: int
    ignored: int


HOOK_OPENAPI = url_token_openapi(
    "the account's hook secret, from the URL given to setHook",
    {"application/json": {"schema": {}}},
)


async def _account_for(session: SessionDep, token: str | None) -> Account:
    hashed = token_hash(url_token(token, url="hook", code="invalid_hook_token"))
    account = await session.scalar(
        select(Account).where(Account.unisender_hook_token_hash == hashed)
    )
    if account is None:
        raise Unauthorized("unknown hook token", code="invalid_hook_token")
    return account


@router.post(
    "/unisender/webhook",
    tags=["Unisender"],
    response_model=HookAccepted,
    openapi_extra=HOOK_OPENAPI,
)
async def unisender_webhook(
    request: Request, services: ServicesDep, session: SessionDep
) -> HookAccepted:
    """Unisender's event notifications: unsubscribes are stored before the 200 and written
    back to amoCRM by the worker; other events are acknowledged and ignored."""
    account = await _account_for(session, request.query_params.get("token"))
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise BadRequest("the body is not JSON", code="invalid_json") from None
    found, other = unsubscribes(body)
    if account.status == AccountStatus.DISCONNECTED or not found:
        return HookAccepted(accepted=0, ignored=other + len(found))
    insert = insert_for(dialect_name(session))
    now = utcnow()
    rows: dict[str, dict[str, Any]] = {
        event.dedupe_key: {
            "account_id": account.id,
            "dedupe_key": event.dedupe_key,
            "email": event.email,
            "list_id": event.list_id,
            "event_time": event.event_time,
            "received_at": now,
            "status": ConsentStatus.PENDING,
            "contact_ids": [],
        }
        for event in found
    }
    # A redelivered event is the row already stored: nothing new, nothing written twice.
    await session.execute(
        insert(ConsentEvent)
        .values(list(rows.values()))
        .on_conflict_do_nothing(index_elements=["account_id", "dedupe_key"])
    )
    await CONSENT.enqueue(session, AccountJob(account.id))
    # Committed before the answer goes out (SessionDep); an inline worker polls within
    # a fraction of a second should it wake before the commit.
    services.notify_work()
    return HookAccepted(accepted=len(found), ignored=other)


@router.get("/unisender/webhook", tags=["Unisender"], include_in_schema=False)
async def unisender_webhook_check(request: Request, session: SessionDep) -> dict[str, bool]:
    """A GET to the hook URL (a check some senders make when a hook is set): 200 for our
    token, 401 otherwise; nothing is stored."""
    await _account_for(session, request.query_params.get("token"))
    return {"ok": True}
