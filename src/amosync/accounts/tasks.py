"""The accounts' jobs: the install's code exchange and amoCRM's webhook registration; the
jobs a replaced Unisender key queues; and what the worker asks of the accounts' problems
(`AccountHooks`)."""

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


@dataclass(frozen=True)
class FullSyncJob:
    """The run a full sync job works for (`accounts.runs.start_run` made it)."""

    account_id: int
    run_id: int


@dataclass(frozen=True)
class RemoveHookJob:
    """A replaced key and its hook's token, encrypted (`accounts.unisender.retire_hook`)."""

    account_id: int
    key: str
    token: str


INSTALL = Task("install", InstallJob, max_attempts=10)
WEBHOOKS = Task("webhooks", AccountJob, dedupe=per_account("webhooks"))

# What a new Unisender key queues (`accounts.unisender.key_changed`), declared here so the
# accounts domain queues them without importing the domains above it; each is run where it
# belongs: our hook at Unisender by `amosync.consent.hooks`, the webhook changes kept while
# the key was refused by `amosync.sync.jobs` (re-exported by consent.tasks and sync.tasks).
UNISENDER_HOOK = Task("unisender_hook", AccountJob, dedupe=per_account("unisender_hook"))
# No dedupe: each job carries its own key; a removal that keeps failing only shows a problem.
UNISENDER_HOOK_REMOVE = Task("unisender_hook_remove", RemoveHookJob, max_attempts=5)
CHANGES = Task("changes", AccountJob, dedupe=per_account("changes"))
# Queued by `amosync.accounts.runs` (a run's start), run by `amosync.sync.jobs`.
FULL_SYNC = Task("full_sync", FullSyncJob, dedupe=per_account("full_sync"), max_attempts=12)


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
