"""Driving a sandbox over its `/_sandbox` control routes, in-process and in a subprocess."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl

import httpx
import pytest

from amosync.sandbox import DEMO_ACCOUNT_ID, DEMO_UNISENDER_KEY, RemoteSandbox
from amosync.sandbox.controls import ALL
from amosync.sandbox.forms import php_params
from amosync.sandbox.remote import RemoteError
from tests.sandbox.conftest import ACCOUNT_ID, CLIENT_ID, KEY, Served
from tests.servers import free_port


@pytest.fixture
async def remote(served: Served) -> AsyncIterator[RemoteSandbox]:
    async with RemoteSandbox(served.url) as client:
        yield client


async def test_remote_amocrm_controls(served: Served, remote: RemoteSandbox) -> None:
    assert await remote.health()
    await remote.amocrm.add_account(account_id=77, subdomain="beta", name="Beta")
    ids = await remote.amocrm.generate_contacts(77, 600, seed=2)
    assert served.amo.contact_count(77) == len(ids) == 600
    ann = await remote.amocrm.add_contact(77, "Ann", emails=["ann@example.com"])
    updated = await remote.amocrm.update_contact(77, ann["id"], emails=["ann@new.example"])
    assert updated["custom_fields_values"][0]["values"][0]["value"] == "ann@new.example"
    body = await remote.amocrm.webhook_body(77, "update", ann["id"])
    assert dict(parse_qsl(body.decode()))["contacts[update][0][id]"] == str(ann["id"])
    await remote.amocrm.delete_contact(77, ann["id"])
    await remote.amocrm.restore_contact(77, ann["id"])
    assert (await remote.amocrm.account(77))["contacts"] == 601

    settings = await remote.amocrm.configure(latency=0.01, rate_limit_rps=7, access_token_ttl=60)
    assert (settings["latency"], settings["rate_limit_rps"], settings["access_token_ttl"]) == (
        0.01,
        7,
        60,
    )
    assert (served.amo.latency, served.amo.rate_limit_rps) == (0.01, 7)
    code = await remote.amocrm.issue_code(ACCOUNT_ID, CLIENT_ID)
    pair = (await served.token_request(grant_type="authorization_code", code=code)).json()
    assert pair["expires_in"] == 60

    await remote.amocrm.add_fault(500, path="/api/v4/account", times=1)
    assert (await served.api("GET", "/api/v4/account", pair["access_token"])).status_code == 500
    assert (await served.api("GET", "/api/v4/account", pair["access_token"])).status_code == 200
    calls = await remote.calls(api="amocrm", path="/api/v4/account")
    assert [call["status"] for call in calls] == [500, 200]
    # The code exchange and the two calls (the fault picked before the token is read
    # is not the account's).
    assert len(await remote.amocrm.arrivals(ACCOUNT_ID)) == 2
    assert await remote.amocrm.max_per_second(ACCOUNT_ID) == 2
    assert await remote.amocrm.arrivals(ACCOUNT_ID, since=calls[-1]["at"] + 1) == []
    assert (await remote.amocrm.account(ACCOUNT_ID))["max_per_second"] == 2
    assert (await remote.stats())["amocrm"]["max_per_second"] == 2
    assert (await remote.calls_summary())["by_path"]["/api/v4/account"] == 2
    await remote.clear_calls()
    assert served.sandbox.calls == []


async def test_remote_refuses_bad_input(remote: RemoteSandbox) -> None:
    with pytest.raises(RemoteError, match="404"):
        await remote.amocrm.add_contact(424242, "Nobody")
    with pytest.raises(RemoteError, match="400"):
        await remote.amocrm.configure(latency="slow")
    with pytest.raises(RemoteError, match="400"):
        await remote.amocrm.configure(colour="blue")


async def test_remote_unisender_controls(served: Served, remote: RemoteSandbox) -> None:
    await remote.unisender.add_key("second-key")
    assert "second-key" in served.uni.keys
    list_id = served.uni.create_list(KEY, "amoCRM")
    await remote.unisender.reject("no@example.com", "email_blocked")
    params = {"field_names[0]": "email", "field_names[1]": "email_list_ids"}
    for index, email in enumerate(["yes@example.com", "no@example.com"]):
        params |= {f"data[{index}][0]": email, f"data[{index}][1]": str(list_id)}
    await served.unisender("importContacts", **params)
    assert await remote.unisender.lists(KEY) == [{"id": list_id, "title": "amoCRM"}]
    assert await remote.unisender.list_members(KEY, list_id) == {"yes@example.com"}
    await remote.unisender.unsubscribe(KEY, "yes@example.com")
    contact = await remote.unisender.contact(KEY, "yes@example.com")
    assert contact is not None
    assert contact["status"] == "unsubscribed"
    assert await remote.unisender.contact(KEY, "nobody@example.com") is None
    await remote.unisender.configure(rate_limit_rpm=1)
    await remote.unisender.add_fault(method="getLists", code="retry_later")
    assert (await served.unisender("getLists")).json()["code"] == "retry_later"
    stats = await remote.stats()
    assert stats["unisender"]["rate_limited"] == 0


def test_php_params_nest_like_php() -> None:
    parsed = php_params(
        [
            ("api_key", "k"),
            ("field_names[0]", "email"),
            ("field_names[1]", "Name"),
            ("data[1][0]", "b@x.y"),
            ("data[0][0]", "a@x.y"),
            ("data[0][1]", "A"),
            ("tags[]", "one"),
            ("tags[]", "two"),
            ("account[_links][self]", "https://acme.amocrm.ru"),
        ]
    )
    assert parsed == {
        "api_key": "k",
        "field_names": ["email", "Name"],
        "data": [["a@x.y", "A"], ["b@x.y"]],
        "tags": ["one", "two"],
        "account": {"_links": {"self": "https://acme.amocrm.ru"}},
    }


async def test_main_serves_a_seeded_sandbox_in_another_process() -> None:
    port = free_port()
    env = {**os.environ, "AMOSYNC_AMOCRM_CLIENT_ID": "", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", f"from amosync.sandbox import main; main('127.0.0.1', {port})"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with RemoteSandbox(f"http://127.0.0.1:{port}") as remote:
            for _ in range(200):
                try:
                    if await remote.health():
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            account = await remote.amocrm.account(DEMO_ACCOUNT_ID)
            assert account["subdomain"] == "acme"
            assert account["contacts"] > 40
            assert await remote.unisender.lists(DEMO_UNISENDER_KEY) == []
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_every_control_is_routed_once_with_an_argument_model() -> None:
    """Controls build their argument model when first used: each one must build."""
    routes = [(c.verb, c.path) for group in ALL for c in group.by_name.values()]
    assert len(routes) == len(set(routes))
    for group in ALL:
        for control in group.by_name.values():
            assert callable(control.validated)
            assert control.path_arguments <= set(control.signature.parameters)
            assert set(control.types) <= set(control.signature.parameters)
