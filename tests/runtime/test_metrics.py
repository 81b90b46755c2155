"""GET /metrics after a full install + sync + webhook run."""

from __future__ import annotations

import re

from tests.stack import ACCOUNT_ID, stack


def value(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name + (f"{{{label_text}}}" if labels else "")) + r" ([0-9.e+-]+)"
    match = re.search(pattern, text)
    assert match, f"{name} {labels} not in /metrics"
    return float(match.group(1))


async def test_metrics_count_webhooks_syncs_queue_and_upstream_calls(database_url: str) -> None:
    async with stack(database_url) as s:
        before = (await s.http.get("/metrics")).text
        await s.connect(("Ann", ["ann@example.com"]), ("Nobody", []))
        s.sandbox.amocrm.add_contact(ACCOUNT_ID, name="Bob", emails=["bob@example.com"])
        await s.deliver_webhooks()
        response = await s.http.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        after = response.text
        webhooks = "amosync_webhooks_received_total"
        assert value(after, webhooks) >= value(before, webhooks) + 1
        synced = "amosync_sync_contacts_total"
        assert value(after, synced, result="synced") >= 1
        assert value(after, synced, result="unsynced") >= 1
        assert value(after, "amosync_queue_depth", status="pending") >= 0
        calls = "amosync_upstream_calls_total"
        assert value(after, calls, api="amocrm", outcome="ok") >= 2
        assert value(after, calls, api="unisender", outcome="ok") >= 2
