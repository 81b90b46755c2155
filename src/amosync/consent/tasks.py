"""The consent jobs: unsubscribes written back to amoCRM, and our hook at Unisender (the
hook's two tasks are declared by `amosync.accounts.tasks`, whose key replacement queues them)."""

from __future__ import annotations

from amosync.accounts.tasks import UNISENDER_HOOK as UNISENDER_HOOK
from amosync.accounts.tasks import UNISENDER_HOOK_REMOVE as UNISENDER_HOOK_REMOVE
from amosync.accounts.tasks import RemoveHookJob as RemoveHookJob
from amosync.worker.tasks import AccountJob, Task, per_account

CONSENT = Task("consent", AccountJob, dedupe=per_account("consent"))
