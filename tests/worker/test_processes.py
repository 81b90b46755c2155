"""`amosync serve` and `amosync worker` as real processes: kill -9 and SIGTERM lose nothing."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx

from amosync.db.models import PendingChange
from tests.conftest import ADMIN_TOKEN
from tests.servers import free_port
from tests.stack import ACCOUNT_ID, SUBDOMAIN, UNISENDER_KEY, Stack, stack
from tests.worker.processes import Process, env_for

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@asynccontextmanager
async def serve_process(
    s: Stack, tmp_path: Path, name: str, *, worker: str
) -> AsyncIterator[tuple[Process, httpx.AsyncClient]]:
    """`amosync serve` on a port of its own, with the stack's database and sandbox."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = env_for(s.settings, worker=worker, public_url=url)
    process = Process(["serve", "--port", str(port)], env, tmp_path / f"{name}.log")
    try:
        await process.wait_http(f"{url}/health")
        async with httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=30) as http:
            yield process, http
    finally:
        process.close()


async def run_queue(http: httpx.AsyncClient) -> None:
    """GET /webhookwork until nothing is due."""
    for _ in range(20):
        answer = (await http.get("/webhookwork")).json()
        assert answer["failed"] == 0, answer
        if answer["pending"] == 0:
            return
    raise AssertionError("the queue never emptied")


async def install_through(s: Stack, http: httpx.AsyncClient) -> None:
    """amoCRM's install call and the widget's Unisender key, sent to the process."""
    amo = s.sandbox.amocrm
    amo.add_account(account_id=ACCOUNT_ID, subdomain=SUBDOMAIN, name="Acme")
    assert s.settings.amocrm_client_id
    code = amo.issue_code(ACCOUNT_ID, s.settings.amocrm_client_id)
    params = {
        "code": code,
        "referer": f"{SUBDOMAIN}.amocrm.ru",
        "client_id": s.settings.amocrm_client_id,
        "from_widget": "1",
    }
    assert (await http.get("/vidget", params=params)).status_code == 200
    await run_queue(http)
    s.sandbox.unisender.add_key(UNISENDER_KEY)
    response = await http.post(
        "/vidget/unisender",
        data={"account_id": str(ACCOUNT_ID), "unisender_key": UNISENDER_KEY},
        headers=s.widget_headers(),
    )
    assert response.status_code == 200, response.text
    await run_queue(http)
    [hook] = amo.webhooks(ACCOUNT_ID)
    assert hook["destination"].startswith(str(http.base_url).rstrip("/") + "/webhook?token=")


async def test_kill_9_after_the_200_loses_no_change(database_url: str, tmp_path: Path) -> None:
    async with stack(database_url) as s, AsyncExitStack() as running:
        amo = s.sandbox.amocrm
        first, http = await running.enter_async_context(
            serve_process(s, tmp_path, "first", worker="off")
        )
        await install_through(s, http)

        emails = {}
        for n in range(20):
            contact = amo.add_contact(ACCOUNT_ID, name=f"C{n}", emails=[f"c{n}@example.com"])
            emails[contact["id"]] = f"c{n}@example.com"
        await amo.flush_webhooks()
        assert [d.status for d in amo.deliveries] == [200] * 20

        # More changes, several deliveries in flight, and the process killed among them.
        amo.webhook_concurrency = 4
        for n in range(20, 60):
            contact = amo.add_contact(ACCOUNT_ID, name=f"C{n}", emails=[f"c{n}@example.com"])
            emails[contact["id"]] = f"c{n}@example.com"
        async with asyncio.timeout(10):
            while sum(d.status == 200 for d in amo.deliveries) < 30:
                await asyncio.sleep(0.001)
        first.signal(signal.SIGKILL)
        assert await first.wait_exit(5) == -signal.SIGKILL
        await amo.flush_webhooks()
        acked = {emails[d.contact_id] for d in amo.deliveries if d.status == 200}
        assert 30 <= len(acked) < 60, "the kill was meant to land mid-stream"
        assert s.members() == set(), "nothing was applied before the kill"
        assert await s.count(PendingChange) >= len(acked)

        # A new process with its worker inline picks up what the dead one accepted.
        await running.enter_async_context(serve_process(s, tmp_path, "second", worker="inline"))
        async with asyncio.timeout(20):
            while not acked <= s.members():
                await asyncio.sleep(0.05)
        assert acked <= s.members() <= set(emails.values())
