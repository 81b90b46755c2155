"""The accounts' jobs: the install's code exchange and amoCRM's webhook registration; and
what the worker asks of the accounts' problems (`AccountHooks`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from amosync.accounts.problems import (
    ProblemCode,
    clear_problem,
    describe,
    note_failure,
    set_problem,
    still_blocked,
)
from amosync.worker.tasks import AccountHooks, AccountJob, Task, per_account, register_account_hooks


@dataclass(frozen=True)
class InstallJob:
    """The install call's code (encrypted), the account's host and our client_id; the job
    adds the tokens to its payload once the code is exchanged, so a retry does not redo it."""

    code: str
    host: str
    client_id: str

    @property
    def account_id(self) -> None:
        # The account is created by the job.
        return None


INSTALL = Task("install", InstallJob, max_attempts=10)
WEBHOOKS = Task("webhooks", AccountJob, dedupe=per_account("webhooks"))


async def _set_blocked(
    session: AsyncSession, account_id: int, detail: str, until: datetime
) -> None:
    await set_problem(session, account_id, ProblemCode.amocrm_blocked, detail, until=until)


async def _clear_blocked(session: AsyncSession, account_id: int) -> None:
    await clear_problem(session, account_id, ProblemCode.amocrm_blocked)


register_account_hooks(
    AccountHooks(
        blocked_code=str(ProblemCode.amocrm_blocked),
        still_blocked=still_blocked,
        describe=describe,
        note_failure=note_failure,
        set_blocked=_set_blocked,
        clear_blocked=_clear_blocked,
    )
)
