"""amoCRM's disconnect hook, and what a disconnected account still does (nothing upstream)."""

from __future__ import annotations

import hashlib
import hmac

import httpx
import pytest
from sqlalchemy import select

from amosync.db.models import Account, Integration
from amosync.runtime.services import Services
from tests.stack import ACCOUNT_ID, UNISENDER_KEY, Stack, stack

FORM = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": ""}
CLIENT_UUID = "7f8e2a1c-0000-4000-8000-00000000c11d"


def sign(secret: str, client_uuid: str, account_id: object) -> str:
    message = f"{client_uuid}|{account_id}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def hook_params(services: Services, account_id: int, **changes: str) -> dict[str, str]:
    secret = services.settings.amocrm_client_secret
    assert secret
    params = {
        "account_id": str(account_id),
        "client_uuid": CLIENT_UUID,
        "signature": sign(secret, CLIENT_UUID, account_id),
    }
    params.update(changes)
    return params


def upstream_calls(s: Stack) -> list[str]:
    return [f"{c.api} {c.method} {c.path}" for c in s.sandbox.calls if c.api != "webhook"]


async def connected(s: Stack) -> None:
    await s.install()
    s.sandbox.amocrm.add_contact(ACCOUNT_ID, name="Ann", emails=["ann@example.com"])
    await s.connect_unisender()
    await s.deliver_webhooks()


async def test_a_signed_hook_disconnects_the_account(database_url: str) -> None:
    async with stack(database_url) as s:
        await connected(s)
        response = await s.http.get(
            "/amocrm/disconnect",
            params=hook_params(s.services, ACCOUNT_ID),
            headers={"Authorization": ""},  # amoCRM calls it without our admin token
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"account_id": ACCOUNT_ID, "disconnected": True}
        assert s.sandbox.amocrm.webhooks(ACCOUNT_ID) == []
        async with s.services.sessions() as session:
            account = await session.get(Account, ACCOUNT_ID)
            integration = (await session.execute(select(Integration))).scalar_one()
        assert account is not None
        assert account.status == "disconnected"
        assert account.unisender_key_enc is None
        assert integration.access_token_enc is None
        assert integration.refresh_token_enc is None


def bad_signatures(secret: str) -> list[tuple[str, dict[str, str]]]:
    good = sign(secret, CLIENT_UUID, ACCOUNT_ID)
    return [
        ("another secret", {"signature": sign("not-the-secret", CLIENT_UUID, ACCOUNT_ID)}),
        ("another account", {"signature": sign(secret, CLIENT_UUID, ACCOUNT_ID + 1)}),
        ("another client", {"client_uuid": "someone-else"}),
        ("parts swapped", {"signature": sign(secret, str(ACCOUNT_ID), CLIENT_UUID)}),
        ("truncated", {"signature": good[:-2]}),
        ("extended", {"signature": good + "00"}),
        ("not hex", {"signature": "z" * 64}),
        ("base64", {"signature": "dGVzdA=="}),
    ]


@pytest.mark.parametrize("case", range(8))
async def test_a_badly_signed_hook_is_refused_and_changes_nothing(
    anon: httpx.AsyncClient, client: httpx.AsyncClient, services: Services, case: int
) -> None:
    created = await client.post(f"/accounts/{ACCOUNT_ID}", json={"unisender_key": UNISENDER_KEY})
    assert created.status_code == 201
    secret = services.settings.amocrm_client_secret
    assert secret
    label, changes = bad_signatures(secret)[case]

    response = await anon.get(
        "/amocrm/disconnect", params=hook_params(services, ACCOUNT_ID, **changes)
    )

    assert response.status_code == 403, label
    assert response.json()["error"] == "invalid_signature"
    async with services.sessions() as session:
        account = await session.get(Account, ACCOUNT_ID)
    assert account is not None
    assert account.status == "active"
    assert services.cipher.decrypt_optional(account.unisender_key_enc) == UNISENDER_KEY


async def test_the_signature_is_checked_case_insensitively(
    anon: httpx.AsyncClient, client: httpx.AsyncClient, services: Services
) -> None:
    await client.post(f"/accounts/{ACCOUNT_ID}", json={})
    params = hook_params(services, ACCOUNT_ID)
    params["signature"] = params["signature"].upper()
    response = await anon.get("/amocrm/disconnect", params=params)
    assert response.json() == {"account_id": ACCOUNT_ID, "disconnected": True}


@pytest.mark.parametrize("missing", ["account_id", "client_uuid", "signature"])
async def test_a_hook_missing_a_parameter_is_refused(
    anon: httpx.AsyncClient, client: httpx.AsyncClient, services: Services, missing: str
) -> None:
    await client.post(f"/accounts/{ACCOUNT_ID}", json={})
    params = hook_params(services, ACCOUNT_ID)
    del params[missing]
    response = await anon.get("/amocrm/disconnect", params=params)
    assert 400 <= response.status_code < 500
    assert set(response.json()) == {"error", "detail"}
    async with services.sessions() as session:
        account = await session.get(Account, ACCOUNT_ID)
    assert account is not None
    assert account.status == "active"


@pytest.mark.parametrize("account_id", ["abc", "-1", "0", "1e3", "99999999999999999999999"])
async def test_a_hook_with_a_malformed_account_id_is_a_4xx(
    anon: httpx.AsyncClient, services: Services, account_id: str
) -> None:
    secret = services.settings.amocrm_client_secret or ""
    params = {
        "account_id": account_id,
        "client_uuid": CLIENT_UUID,
        "signature": sign(secret, CLIENT_UUID, account_id),
    }
    response = await anon.get("/amocrm/disconnect", params=params)
    assert 400 <= response.status_code < 500
    assert set(response.json()) == {"error", "detail"}


async def test_a_signed_hook_for_an_unknown_account_is_404(
    anon: httpx.AsyncClient, services: Services
) -> None:
    response = await anon.get("/amocrm/disconnect", params=hook_params(services, 777))
    assert response.status_code == 404
    assert response.json()["error"] == "account_not_found"


# --- after the disconnect: nothing goes upstream ----------------------------------------


async def test_after_a_disconnect_nothing_is_called_upstream(database_url: str) -> None:
    async with stack(database_url) as s:
        await connected(s)
        amo = s.sandbox.amocrm
        url = amo.webhooks(ACCOUNT_ID)[0]["destination"]
        rpc = {
            "jsonrpc": "2.0",
            "method": "account.disconnect",
            "params": {"account_id": ACCOUNT_ID},
        }
        assert (await s.http.post("/rpc", json={**rpc, "id": 1})).status_code == 200
        s.sandbox.calls.clear()
        deliveries = len(amo.deliveries)

        # A webhook amoCRM had already sent (or retries) is acknowledged and ignored.
        bob = amo.add_contact(ACCOUNT_ID, name="Bob", emails=["bob@example.com"])
        late = await s.http.post(
            url, content=amo.webhook_body(ACCOUNT_ID, "add", bob["id"]), headers=FORM
        )
        assert late.status_code == 200
        assert late.json() == {"accepted": 0, "ignored": True}
        # amoCRM no longer calls us: the webhook was unregistered.
        amo.update_contact(ACCOUNT_ID, bob["id"], emails=["bob2@example.com"])
        await amo.flush_webhooks()
        assert len(amo.deliveries) == deliveries

        # A full sync is refused at once, by the admin and by the widget.
        for headers in ({}, {"Authorization": "", **s.widget_headers()}):
            refused = await s.http.post("/sync", json={"account_id": ACCOUNT_ID}, headers=headers)
            assert refused.status_code == 400
            assert refused.json()["error"] == "account_disconnected"
        key = await s.http.post(
            "/vidget/unisender",
            json={"account_id": ACCOUNT_ID, "unisender_key": UNISENDER_KEY},
            headers={"Authorization": "", **s.widget_headers()},
        )
        assert key.json()["error"] == "account_disconnected"
        assert (await s.http.post("/rpc", json={**rpc, "id": 2})).status_code == 200
        work = await s.http.get("/webhookwork")
        assert work.status_code == 200
        await s.settle()

        assert upstream_calls(s) == []
        members = s.sandbox.unisender.list_members(
            UNISENDER_KEY, s.sandbox.unisender.lists(UNISENDER_KEY)[0]["id"]
        )
        assert members == {"ann@example.com"}
