"""An account's problems: conditions a person must act on (SPEC §3 `problems`).

Two kinds, one view:

- stored ones (table `account_problems`), set where the condition is found: a Unisender key
  refused, an amoCRM block, a webhook amoCRM dropped or disabled, Unisender's hook stopped.
  Each is cleared where its cause goes away (a new key, the block's end, the webhook
  registered again), and the stored row alone never outlives its cause: a problem whose
  cause the account row shows (the key) is checked against it, and one known to expire
  (`until`) is not shown after it;
- derived ones, read off the account itself: `reauth_required` from its status,
  `unisender_key_missing` when no key is stored.

A disconnected account shows none: its only remedy is installing again, which its status says.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import case, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from amosync.db.engine import dialect_name, insert_for
from amosync.db.models import Account, AccountProblem, AccountStatus, utcnow
from amosync.errors import (
    AmoCRMBlocked,
    AppError,
    AuthorizationRevoked,
    InvalidApiKey,
    PermanentUpstreamError,
    UpstreamError,
)


class ProblemCode(StrEnum):
    reauth_required = "reauth_required"
    unisender_key_invalid = "unisender_key_invalid"
    unisender_key_missing = "unisender_key_missing"
    amocrm_blocked = "amocrm_blocked"
    amocrm_webhook_missing = "amocrm_webhook_missing"
    amocrm_webhook_disabled = "amocrm_webhook_disabled"
    unisender_hook_stopped = "unisender_hook_stopped"
    # The hook of a replaced Unisender key could not be removed with that key.
    unisender_hook_not_removed = "unisender_hook_not_removed"
    # amoCRM or Unisender refused a request for good (a 4xx other than the ones above).
    request_refused = "request_refused"


# Installing the widget again gives amoCRM's answer to this account a fresh start; a new
# Unisender key, Unisender's. A sync that finishes proves both work.
CLEARED_BY_INSTALL = (
    ProblemCode.reauth_required,
    ProblemCode.request_refused,
    ProblemCode.amocrm_webhook_missing,
    ProblemCode.amocrm_webhook_disabled,
)
CLEARED_BY_KEY = (ProblemCode.unisender_key_invalid, ProblemCode.request_refused)
CLEARED_BY_SYNC = (ProblemCode.unisender_key_invalid, ProblemCode.request_refused)


class Problem(BaseModel):
    code: ProblemCode
    detail: str
    since: datetime


REAUTH_DETAIL = "amoCRM refused this account's authorization; install the widget again"
KEY_MISSING_DETAIL = "no Unisender API key is connected; connect one in the widget"


API_NAMES = {"amocrm": "amoCRM", "unisender": "Unisender"}


def describe(exc: BaseException) -> str:
    """What went wrong and what a person can do about it, for a run's or a job's `error`."""
    if isinstance(exc, AuthorizationRevoked):
        return (
            f"amoCRM refused this account's authorization ({_said(exc)}); "
            "install the widget again in amoCRM, then retry the sync"
        )
    if isinstance(exc, InvalidApiKey):
        return (
            f"Unisender refused the API key ({_said(exc)}); copy the key again from "
            "Unisender → Settings → API, connect it in the widget, then retry the sync"
        )
    if isinstance(exc, AmoCRMBlocked):
        return (
            "amoCRM blocked this integration's requests for a while after too many of them "
            f"({_said(exc)}); amosync pauses the account and resumes by itself"
        )
    if isinstance(exc, PermanentUpstreamError) and exc.api in API_NAMES:
        return (
            f"{API_NAMES[exc.api]} refused a request ({_said(exc)}); retrying it will not "
            "help: fix what it names, then retry the sync"
        )
    if isinstance(exc, AppError):
        return exc.detail[:1000]
    return f"{type(exc).__name__}: {exc}"[:1000]


def _said(exc: UpstreamError) -> str:
    parts = [exc.message]
    if exc.status is not None and exc.status >= 400:  # Unisender says errors with a 200
        parts.append(f"HTTP {exc.status}")
    if exc.code:
        parts.append(exc.code)
    return ", ".join(parts)[:500]


async def still_blocked(
    session: AsyncSession, account_id: int, cause: BaseException
) -> AmoCRMBlocked | None:
    """`cause` as amoCRM's block when it is a 403 from amoCRM for an account whose block
    nothing has cleared yet (no job of it finished since): the same block, whichever process
    saw the 429s before it. None otherwise."""
    if not (
        isinstance(cause, PermanentUpstreamError)
        and not isinstance(cause, AuthorizationRevoked)
        and cause.api == "amocrm"
        and cause.status == 403
    ):
        return None
    found = await session.scalar(
        select(AccountProblem.code).where(
            AccountProblem.account_id == account_id,
            AccountProblem.code == str(ProblemCode.amocrm_blocked),
        )
    )
    if found is None:
        return None
    return AmoCRMBlocked(
        f"{cause.message} (still blocked)", api=cause.api, status=cause.status, body=cause.body
    )


async def note_failure(session: AsyncSession, account_id: int, exc: BaseException) -> None:
    """Mark the account with what a permanent failure means for it (SPEC §4)."""
    if isinstance(exc, AuthorizationRevoked):
        # Shown as `reauth_required` (derived from the status).
        await session.execute(
            update(Account)
            .where(Account.id == account_id, Account.status == AccountStatus.ACTIVE)
            .values(status=AccountStatus.REAUTH_REQUIRED)
        )
    elif isinstance(exc, InvalidApiKey):
        await session.execute(
            update(Account)
            .where(Account.id == account_id)
            .values(unisender_valid=False, unisender_checked_at=utcnow())
        )
        await set_problem(session, account_id, ProblemCode.unisender_key_invalid, describe(exc))
    elif isinstance(exc, PermanentUpstreamError):
        await set_problem(session, account_id, ProblemCode.request_refused, describe(exc))


async def set_problem(
    session: AsyncSession,
    account_id: int,
    code: ProblemCode,
    detail: str,
    *,
    until: datetime | None = None,
) -> None:
    """Record (or refresh the detail of) a problem; the first `since` is kept.

    `until`: the problem ends by itself then (a block), even if nobody clears it.
    """
    now = utcnow()
    insert = insert_for(dialect_name(session))
    statement = insert(AccountProblem).values(
        account_id=account_id,
        code=str(code),
        detail=detail[:2000],
        since=now,
        until=until,
        updated_at=now,
    )
    # An expired row is a new occurrence: it starts a new `since`.
    excluded = statement.excluded
    expired = AccountProblem.until.is_not(None) & (AccountProblem.until < now)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["account_id", "code"],
            set_={
                "detail": excluded.detail,
                "until": excluded.until,
                "updated_at": excluded.updated_at,
                "since": case((expired, excluded.since), else_=AccountProblem.since),
            },
        )
    )


async def clear_problem(session: AsyncSession, account_id: int, *codes: ProblemCode) -> None:
    """The cause is gone: forget these problems (all stored ones when no code is named)."""
    statement = delete(AccountProblem).where(AccountProblem.account_id == account_id)
    if codes:
        statement = statement.where(AccountProblem.code.in_([str(c) for c in codes]))
    await session.execute(statement)


def _cause_gone(code: str, account: Any) -> bool:
    """Whether the account row shows that a stored problem's cause has gone away."""
    if code == ProblemCode.unisender_key_invalid:
        # The key was replaced (and accepted) or removed since Unisender refused it.
        return not account.has_key or bool(account.unisender_valid)
    if code == ProblemCode.unisender_key_missing:
        return bool(account.has_key)
    if code == ProblemCode.reauth_required:
        return bool(account.status != AccountStatus.REAUTH_REQUIRED)
    return False


async def problems_for(
    session: AsyncSession, account_ids: Sequence[int]
) -> dict[int, list[Problem]]:
    """Every account's current problems, oldest first; an account without any maps to []."""
    out: dict[int, list[Problem]] = defaultdict(list)
    if not account_ids:
        return out
    accounts = {
        row.id: row
        for row in (
            await session.execute(
                select(
                    Account.id,
                    Account.status,
                    Account.unisender_key_enc.is_not(None).label("has_key"),
                    Account.unisender_valid,
                    Account.created_at,
                    Account.updated_at,
                ).where(Account.id.in_(account_ids))
            )
        ).all()
    }
    now = utcnow()
    stored = (
        await session.execute(
            select(AccountProblem)
            .where(AccountProblem.account_id.in_(list(accounts)))
            .order_by(AccountProblem.since, AccountProblem.code)
        )
    ).scalars()
    for row in stored:
        account = accounts[row.account_id]
        if account.status == AccountStatus.DISCONNECTED:
            continue
        if row.until is not None and row.until <= now:
            continue
        if _cause_gone(row.code, account):
            continue
        try:
            code = ProblemCode(row.code)
        except ValueError:
            continue  # a code a newer version wrote; nothing this one can say about it
        out[row.account_id].append(Problem(code=code, detail=row.detail, since=row.since))
    for account_id, account in accounts.items():
        if account.status == AccountStatus.DISCONNECTED:
            continue
        derived = []
        if account.status == AccountStatus.REAUTH_REQUIRED:
            derived.append(
                Problem(
                    code=ProblemCode.reauth_required,
                    detail=REAUTH_DETAIL,
                    since=account.updated_at,
                )
            )
        if not account.has_key:
            derived.append(
                Problem(
                    code=ProblemCode.unisender_key_missing,
                    detail=KEY_MISSING_DETAIL,
                    since=account.created_at,
                )
            )
        known = {p.code for p in out[account_id]}
        out[account_id] = [p for p in derived if p.code not in known] + out[account_id]
    return out
