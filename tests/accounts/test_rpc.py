"""POST /rpc (JSON-RPC 2.0, admin): `account.disconnect` end to end, and its errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from amosync.db.models import Account, Contact, Integration, Job, PendingChange, SyncRun
from amosync.runtime.services import Services
from tests.conftest import ADMIN_TOKEN
from tests.stack import ACCOUNT_ID, Stack, stack

FORM = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": ""}


def disconnect_call(account_id: object, id_: object = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "method": "account.disconnect",
        "params": {"account_id": account_id},
        "id": id_,
    }


async def create_account(http: httpx.AsyncClient, account_id: int) -> None:
    response = await http.post(
        f"/accounts/{account_id}", json={"subdomain": f"a{account_id}", "unisender_key": "k"}
    )
    assert response.status_code == 201, response.text


async def status_of(services: Services, account_id: int) -> str | None:
    async with services.sessions() as session:
        account = await session.get(Account, account_id)
    return None if account is None else account.status


async def count(services: Services, model: Any, account_id: int, *where: Any) -> int:
    async with services.sessions() as session:
        total = await session.scalar(
            select(func.count()).select_from(model).where(model.account_id == account_id, *where)
        )
    return int(total or 0)


async def installed_with_pending_work(s: Stack) -> None:
    """An installed, synced account, with a webhook change and a full sync still queued."""
    amo = s.sandbox.amocrm
    await s.install()
    amo.webhooks_enabled = False  # the changes below are posted by hand
    amo.add_contact(ACCOUNT_ID, name="Ann", emails=["ann@example.com"])
    amo.add_contact(ACCOUNT_ID, name="Nobody")
    await s.connect_unisender()
    await s.settle()
    bob = amo.add_contact(ACCOUNT_ID, name="Bob", emails=["bob@example.com"])
    url = amo.webhooks(ACCOUNT_ID)[0]["destination"]
    stored = await s.http.post(
        url, content=amo.webhook_body(ACCOUNT_ID, "add", bob["id"]), headers=FORM
    )
    assert stored.json()["accepted"] == 1
    queued = await s.http.post("/sync", json={"account_id": ACCOUNT_ID})
    assert queued.status_code == 202


async def test_disconnect_unregisters_webhooks_forgets_secrets_and_drops_work(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        await installed_with_pending_work(s)
        services = s.services
        assert s.sandbox.amocrm.webhooks(ACCOUNT_ID) != []
        assert await count(services, PendingChange, ACCOUNT_ID) == 1
        assert await count(services, Job, ACCOUNT_ID, Job.status == "pending") >= 2

        response = await s.http.post("/rpc", json=disconnect_call(ACCOUNT_ID, id_="d-1"))

        assert response.status_code == 200
        assert response.json() == {
            "jsonrpc": "2.0",
            "result": {"account_id": ACCOUNT_ID, "disconnected": True},
            "id": "d-1",
        }
        assert s.sandbox.amocrm.webhooks(ACCOUNT_ID) == []
        async with services.sessions() as session:
            account = await session.get(Account, ACCOUNT_ID)
            integrations = (await session.execute(select(Integration))).scalars().all()
            runs = (await session.execute(select(SyncRun))).scalars().all()
        assert account is not None
        assert account.status == "disconnected"
        assert account.unisender_key_enc is None
        assert account.unisender_valid is False
        assert integrations, "the integration row is kept, without its secrets"
        for integration in integrations:
            assert integration.access_token_enc is None
            assert integration.refresh_token_enc is None
            assert integration.client_secret_enc is None
            assert integration.webhook_registered is False
        assert await count(services, PendingChange, ACCOUNT_ID) == 0
        assert await count(services, Job, ACCOUNT_ID, Job.status == "pending") == 0
        assert [run.status for run in runs if run.finished_at is None] == []
        assert runs[-1].error == "account disconnected"
        # What was learnt about the contacts stays for the operator.
        assert await count(services, Contact, ACCOUNT_ID) == 2
        synced = await s.http.get("/accounts/sync", params={"account_id": ACCOUNT_ID})
        assert [item["name"] for item in synced.json()["items"]] == ["Ann"]
        unsynced = await s.http.get("/accounts/unsync", params={"account_id": ACCOUNT_ID})
        assert [item["reason"] for item in unsynced.json()["items"]] == ["no_email"]
        shown = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()
        assert shown["status"] == "disconnected"
        assert shown["unisender_connected"] is False
        has = await s.http.get("/acchasuni", params={"account_id": ACCOUNT_ID})
        assert has.json() == {"account_id": ACCOUNT_ID, "connected": False}


async def test_disconnect_still_succeeds_when_amocrm_cannot_unregister(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        s.sandbox.amocrm.add_fault(500, path="/api/v4/webhooks", times=None)
        response = await s.http.post("/rpc", json=disconnect_call(ACCOUNT_ID))
        assert response.json()["result"] == {"account_id": ACCOUNT_ID, "disconnected": True}
        assert await status_of(s.services, ACCOUNT_ID) == "disconnected"


async def test_disconnecting_twice_is_harmless(
    client: httpx.AsyncClient, services: Services
) -> None:
    await create_account(client, 11)
    for id_ in (1, 2):
        response = await client.post("/rpc", json=disconnect_call(11, id_))
        assert response.json()["result"] == {"account_id": 11, "disconnected": True}
    assert await status_of(services, 11) == "disconnected"


async def test_an_unknown_account_is_error_32004(client: httpx.AsyncClient) -> None:
    response = await client.post("/rpc", json=disconnect_call(999, id_=5))
    assert response.status_code == 200
    answer = response.json()
    assert answer["id"] == 5
    assert answer["error"]["code"] == -32004
    assert "999" in answer["error"]["message"]
    assert "result" not in answer


@pytest.mark.parametrize(
    "params",
    [
        {"account_id": "abc"},
        {"account_id": 0},
        {"account_id": -3},
        {"account_id": 1.5},
        {"account_id": 2**63},
        {"account_id": 10**30},
        {"account_id": None},
        {},
        {"account": 1},
        [1],
        None,
    ],
)
async def test_invalid_params_are_error_32602(
    client: httpx.AsyncClient, services: Services, params: object
) -> None:
    await create_account(client, 1)
    body = {"jsonrpc": "2.0", "method": "account.disconnect", "params": params, "id": 3}
    answer = (await client.post("/rpc", json=body)).json()
    # `"params": null` is not an object or an array: the request itself is invalid.
    expected = -32600 if params is None else -32602
    assert (answer["id"], answer["error"]["code"]) == (3, expected)
    assert await status_of(services, 1) == "active"


async def test_an_unknown_method_is_error_32601(client: httpx.AsyncClient) -> None:
    body = {"jsonrpc": "2.0", "method": "account.delete", "params": {"account_id": 1}, "id": "x"}
    answer = (await client.post("/rpc", json=body)).json()
    assert (answer["id"], answer["error"]["code"]) == ("x", -32601)


@pytest.mark.parametrize(
    "body", [b"{", b'{"jsonrpc": "2.0", "method": }', b"\xff\xfe", b"", b"NaN", b"[1,]"]
)
async def test_a_body_that_is_not_json_is_error_32700(
    client: httpx.AsyncClient, body: bytes
) -> None:
    response = await client.post("/rpc", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    answer = response.json()
    assert (answer["id"], answer["error"]["code"]) == (None, -32700)


@pytest.mark.parametrize(
    ("body", "id_"),
    [
        ({"method": "account.disconnect", "params": {"account_id": 1}, "id": 1}, 1),
        ({"jsonrpc": "1.0", "method": "account.disconnect", "id": 2}, 2),
        ({"jsonrpc": "2.0", "method": 7, "id": 3}, 3),
        ({"jsonrpc": "2.0", "id": 4}, 4),
        ({"jsonrpc": "2.0", "method": "account.disconnect", "params": "1", "id": 5}, 5),
        ([], None),
        ("account.disconnect", None),
        (42, None),
    ],
)
async def test_an_invalid_request_is_error_32600(
    client: httpx.AsyncClient, services: Services, body: object, id_: object
) -> None:
    await create_account(client, 1)
    answer = (await client.post("/rpc", json=body)).json()
    assert (answer["id"], answer["error"]["code"]) == (id_, -32600)
    assert await status_of(services, 1) == "active"


async def test_a_batch_answers_each_call_but_not_its_notifications(
    client: httpx.AsyncClient, services: Services
) -> None:
    await create_account(client, 21)
    await create_account(client, 22)
    notification = disconnect_call(22)
    del notification["id"]
    batch = [disconnect_call(21, id_=1), disconnect_call(404, id_=2), notification]

    response = await client.post("/rpc", json=batch)

    assert response.status_code == 200
    first, second = response.json()  # the notification has no entry
    assert first == {"jsonrpc": "2.0", "result": {"account_id": 21, "disconnected": True}, "id": 1}
    assert (second["id"], second["error"]["code"]) == (2, -32004)
    # The notification ran all the same.
    assert await status_of(services, 21) == "disconnected"
    assert await status_of(services, 22) == "disconnected"


async def test_a_notification_alone_gets_204_and_no_body(
    client: httpx.AsyncClient, services: Services
) -> None:
    await create_account(client, 31)
    notification = disconnect_call(31)
    del notification["id"]
    response = await client.post("/rpc", json=notification)
    assert response.status_code == 204
    assert response.content == b""
    assert await status_of(services, 31) == "disconnected"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": ""},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": "", "X-Auth-Token": "a.b.c"},
    ],
)
async def test_rpc_needs_the_admin_token(
    client: httpx.AsyncClient, services: Services, headers: dict[str, str]
) -> None:
    await create_account(client, 41)
    response = await client.post("/rpc", json=disconnect_call(41), headers=headers)
    assert response.status_code == 401
    assert set(response.json()) == {"error", "detail"}
    assert await status_of(services, 41) == "active"


async def test_a_widget_token_is_not_enough_for_rpc(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        headers = {"Authorization": "", **s.widget_headers(ACCOUNT_ID)}
        response = await s.http.post("/rpc", json=disconnect_call(ACCOUNT_ID), headers=headers)
        assert response.status_code == 401
        assert await status_of(s.services, ACCOUNT_ID) == "active"
        assert s.sandbox.amocrm.webhooks(ACCOUNT_ID) != []
