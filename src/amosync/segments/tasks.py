"""The segments' job: the full sync for settings changed while one was running."""

from __future__ import annotations

from amosync.worker.tasks import AccountJob, Task, per_account

RESYNC = Task("resync", AccountJob, dedupe=per_account("resync"))
