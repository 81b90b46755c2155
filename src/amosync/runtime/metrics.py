"""Prometheus metrics (GET /metrics)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from amosync.http.deps import ServicesDep
from amosync.worker import queue

webhooks_received = Counter("amosync_webhooks_received_total", "Webhook requests accepted")
contacts_synced = Counter("amosync_sync_contacts_total", "Contacts processed by syncs", ["result"])
upstream_calls = Counter(
    "amosync_upstream_calls_total", "Calls to amoCRM and Unisender", ["api", "outcome"]
)
upstream_seconds = Histogram("amosync_upstream_seconds", "Upstream call duration", ["api"])
queue_depth = Gauge("amosync_queue_depth", "Jobs by status", ["status"])


def observe_upstream(api: str, outcome: str, seconds: float) -> None:
    """The clients' `observer`: every upstream call, its outcome (ok, rate_limited, …)."""
    upstream_calls.labels(api=api, outcome=outcome).inc()
    upstream_seconds.labels(api=api).observe(seconds)


router = APIRouter(tags=["system"])


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(services: ServicesDep) -> PlainTextResponse:
    """Prometheus metrics."""
    async with services.sessions() as session:
        by_status = await queue.counts(session)
    for status in ("pending", "running", "failed", "done"):
        queue_depth.labels(status=status).set(by_status.get(status, 0))
    return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)
