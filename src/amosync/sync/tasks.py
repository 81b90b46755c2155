"""The sync jobs: a full sync, the webhook changes kept for an account, the periodic pass."""

from __future__ import annotations

# Declared by the accounts, whose key replacement and run start queue them (see there);
# run by `amosync.sync.jobs`.
from amosync.accounts.tasks import CHANGES as CHANGES
from amosync.accounts.tasks import FULL_SYNC as FULL_SYNC
from amosync.accounts.tasks import FullSyncJob as FullSyncJob
from amosync.worker.tasks import AccountJob, Task, per_account

# How often the periodic pass (reconcile.py) runs for an account.
RECONCILE_EVERY = 15 * 60.0


RECONCILE = Task("reconcile", AccountJob, dedupe=per_account("reconcile"), delay=RECONCILE_EVERY)
