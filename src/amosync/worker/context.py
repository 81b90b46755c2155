"""What a running job is given: its row's fields and the services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update

from amosync.db.engine import transaction
from amosync.db.models import Job
from amosync.runtime.services import Services


@dataclass
class JobContext:
    services: Services
    job_id: int
    kind: str
    account_id: int | None
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    worker_id: str  # the lease owner: `<worker id>/<slot>`

    async def save_payload(self, payload: dict[str, Any]) -> None:
        """Persist progress in the job itself, so a retry continues instead of redoing."""
        self.payload = payload
        async with transaction(self.services.sessions) as session:
            await session.execute(update(Job).where(Job.id == self.job_id).values(payload=payload))


Handler = Callable[[JobContext], Awaitable[None]]
