"""The sandbox's amoCRM block (403 after repeated 429s) and webhooks amoCRM turned off,
driven through the control API as other processes drive it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from amosync.sandbox import RemoteSandbox
from tests.sandbox.conftest import ACCOUNT_ID, Served

FIXTURES = Path(__file__).parent.parent / "fixtures" / "amocrm" / "webhooks"


@pytest.fixture
async def remote(served: Served) -> AsyncIterator[RemoteSandbox]:
    async with RemoteSandbox(served.url) as client:
        yield client


async def test_repeated_429s_block_the_account_with_403_for_a_while(
    served: Served, remote: RemoteSandbox, token: str
) -> None:
    settings = await remote.amocrm.configure(block_after_429s=2, block_seconds=0.5)
    assert (settings["block_after_429s"], settings["block_seconds"]) == (2, 0.5)
    await remote.amocrm.add_fault(429, path="/api/v4/account", times=2)

    statuses = [(await served.api("GET", "/api/v4/account", token)).status_code for _ in range(4)]
    assert statuses == [429, 429, 403, 403]
    blocked = await served.api("GET", "/api/v4/account", token)
    assert blocked.headers["content-type"] == "application/problem+json"
    assert blocked.json()["status"] == 403
    assert (await remote.amocrm.account(ACCOUNT_ID))["blocked"] == 3

    await asyncio.sleep(0.6)
    assert (await served.api("GET", "/api/v4/account", token)).status_code == 200


async def test_without_a_threshold_429s_never_block(served: Served, token: str) -> None:
    served.amo.add_fault(429, path="/api/v4/account", times=5)
    statuses = [(await served.api("GET", "/api/v4/account", token)).status_code for _ in range(6)]
    assert statuses == [429] * 5 + [200]


async def test_a_disabled_webhook_is_listed_so_and_gets_nothing_until_registered_again(
    served: Served, remote: RemoteSandbox, token: str
) -> None:
    destination = f"{served.url}/_nowhere"
    body = {"destination": destination, "settings": ["add_contact"]}
    assert (await served.api("POST", "/api/v4/webhooks", token, json=body)).status_code == 200

    assert await remote.amocrm.disable_webhook(ACCOUNT_ID, destination) == 1
    listed = (await served.api("GET", "/api/v4/webhooks", token)).json()
    # The real shape (tests/fixtures/amocrm/webhooks): the same keys, `disabled` true.
    fixture = json.loads((FIXTURES / "list.json").read_text())
    [hook] = listed["_embedded"]["webhooks"]
    assert set(hook) == set(fixture["_embedded"]["webhooks"][0])
    assert hook["disabled"] is True
    served.amo.add_contact(ACCOUNT_ID, name="Ann", emails=["ann@example.com"])
    await served.amo.flush_webhooks()
    assert served.amo.deliveries == []

    assert (await served.api("POST", "/api/v4/webhooks", token, json=body)).status_code == 200
    [hook] = (await served.api("GET", "/api/v4/webhooks", token)).json()["_embedded"]["webhooks"]
    assert hook["disabled"] is False

    assert await remote.amocrm.remove_webhook(ACCOUNT_ID, destination) == 1
    assert (await served.api("GET", "/api/v4/webhooks", token)).json()["_embedded"][
        "webhooks"
    ] == []
