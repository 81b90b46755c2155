"""Prometheus counters that the domains and clients bump; `GET /metrics` serves them
(`amosync.worker.metrics`, beside the queue whose depth it adds)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
