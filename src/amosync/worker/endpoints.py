"""Running the queue on demand, for cron-driven deployments (AMOSYNC_WORKER=off)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from amosync.http.auth import AdminDep
from amosync.http.deps import ServicesDep
from amosync.worker import queue
from amosync.worker.runner import Worker

router = APIRouter(tags=["worker"])


class Drained(BaseModel):
    processed: int = Field(description="jobs that ran to the end")
    failed: int = Field(
        description="jobs whose attempt failed: retried later, or failed for good when it "
        "was their last attempt"
    )
    pending: int = Field(
        description="jobs still due when the call returned (call again); a job cut off by "
        "the budget is handed back and counted here"
    )


@router.get("/webhookwork")
async def run_queue(
    _: AdminDep,
    services: ServicesDep,
    budget: Annotated[float, Query(gt=0, le=300, description="seconds")] = 25.0,
) -> Drained:
    """Process what is due within a time budget (for cron with AMOSYNC_WORKER=off)."""
    result = await Worker(services, concurrency=1).drain(budget)
    async with services.sessions() as session:
        pending = await queue.due_count(session)
    return Drained(processed=result["processed"], failed=result["failed"], pending=pending)
