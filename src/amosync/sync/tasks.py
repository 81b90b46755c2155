"""The sync jobs: a full sync, the webhook changes kept for an account, the periodic pass."""

from __future__ import annotations

from dataclasses import dataclass

# Declared by the accounts, whose key replacement queues it; run by `amosync.sync.jobs`.
from amosync.accounts.tasks import CHANGES as CHANGES
from amosync.worker.tasks import AccountJob, Task, per_account

# How often the periodic pass (reconcile.py) runs for an account.
RECONCILE_EVERY = 15 * 60.0


@dataclass(frozen=True)
class FullSyncJob:
    account_id: int
    run_id: int


FULL_SYNC = Task("full_sync", FullSyncJob, dedupe=per_account("full_sync"), max_attempts=12)
RECONCILE = Task("reconcile", AccountJob, dedupe=per_account("reconcile"), delay=RECONCILE_EVERY)
