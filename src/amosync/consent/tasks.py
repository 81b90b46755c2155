"""The consent jobs: unsubscribes written back to amoCRM, and our hook at Unisender."""

from __future__ import annotations

from dataclasses import dataclass

from amosync.worker.tasks import AccountJob, Task, per_account


@dataclass(frozen=True)
class RemoveHookJob:
    """A replaced key and its hook's token, encrypted (`accounts.unisender.retire_hook`)."""

    account_id: int
    key: str
    token: str


CONSENT = Task("consent", AccountJob, dedupe=per_account("consent"))
UNISENDER_HOOK = Task("unisender_hook", AccountJob, dedupe=per_account("unisender_hook"))
# No dedupe: each job carries its own key; a removal that keeps failing only shows a problem.
UNISENDER_HOOK_REMOVE = Task("unisender_hook_remove", RemoveHookJob, max_attempts=5)
