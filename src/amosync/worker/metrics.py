"""`GET /metrics`: the Prometheus counters of `amosync.runtime.metrics`, and the queue's
depth by status, read when scraped."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from amosync.db.models import JobStatus
from amosync.http.deps import ServicesDep
from amosync.runtime.metrics import queue_depth
from amosync.worker import queue

router = APIRouter(tags=["system"])


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(services: ServicesDep) -> PlainTextResponse:
    """Prometheus metrics."""
    async with services.sessions() as session:
        by_status = await queue.counts(session)
    for status in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.FAILED, JobStatus.DONE):
        queue_depth.labels(status=status).set(by_status.get(status, 0))
    return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)
