"""Running the queue on demand, for cron-driven deployments (AMOSYNC_WORKER=off)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from amosync.auth import AdminDep
from amosync.deps import ServicesDep
from amosync.worker import queue
from amosync.worker.runner import Worker

router = APIRouter(tags=["worker"])


class Drained(BaseModel):
    processed: int
    failed: int
    pending: int


@router.get("/webhookwork")
async def run_queue(
    _: AdminDep,
    services: ServicesDep,
    budget: Annotated[float, Query(gt=0, le=300, description="seconds")] = 25.0,
) -> Drained:
    """Process what is due within a time budget."""
    result = await Worker(services, concurrency=1).drain(budget)
    async with services.sessions() as session:
        pending = await queue.due_count(session)
    return Drained(processed=result["processed"], failed=result["failed"], pending=pending)
