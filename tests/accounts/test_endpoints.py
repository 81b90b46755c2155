"""The accounts and integrations API against the real databases."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from amosync.db.models import Account, Integration
from amosync.runtime.services import Services


async def test_create_get_list_update_delete_account(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/accounts/101", json={"subdomain": "acme", "name": "Acme", "list_id": 7}
    )
    assert created.status_code == 201
    body = created.json()
    assert body["id"] == 101
    assert body["subdomain"] == "acme"
    assert body["status"] == "active"
    assert body["unisender_connected"] is False
    assert body["contacts"] == {"synced": 0, "unsynced": 0, "pending": 0, "total": 0}
    assert body["last_sync"] is None

    again = await client.post("/accounts/101", json={})
    assert again.status_code == 409
    assert again.json()["error"] == "account_exists"

    one = await client.get("/accounts/101")
    assert one.status_code == 200
    assert one.json()["name"] == "Acme"

    consent = {"enabled": False, "tag": "unsubscribed", "note": True}
    updated = await client.put(
        "/accounts/101", json={"name": "Acme Ltd", "settings": {"consent": {"enabled": False}}}
    )
    assert updated.status_code == 200
    assert updated.json()["name"] == "Acme Ltd"
    assert updated.json()["subdomain"] == "acme"  # untouched fields stay
    assert updated.json()["settings"] == {"consent": consent}
    # Settings are the §8 shape there too, as at PUT /accounts/{id}/settings.
    unknown = await client.put("/accounts/101", json={"settings": {"a": 1}})
    assert unknown.status_code == 422
    assert unknown.json()["error"] == "invalid_settings"

    listing = await client.get("/accounts")
    assert listing.status_code == 200
    assert [a["id"] for a in listing.json()["items"]] == [101]
    assert listing.json()["next_cursor"] is None

    deleted = await client.delete("/accounts/101")
    assert deleted.status_code == 204
    assert (await client.get("/accounts/101")).status_code == 404


async def test_accounts_are_paginated_with_a_cursor(client: httpx.AsyncClient) -> None:
    for account_id in (5, 3, 9, 1):
        assert (await client.post(f"/accounts/{account_id}", json={})).status_code == 201
    first = (await client.get("/accounts", params={"limit": 3})).json()
    assert [a["id"] for a in first["items"]] == [1, 3, 5]
    assert first["next_cursor"]
    second = (await client.get("/accounts", params={"cursor": first["next_cursor"]})).json()
    assert [a["id"] for a in second["items"]] == [9]
    assert second["next_cursor"] is None
    bad = await client.get("/accounts", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_cursor"


async def test_unisender_key_is_stored_encrypted_and_never_returned(
    client: httpx.AsyncClient, services: Services, captured_logs: list[str]
) -> None:
    key = "unisender-key-" + "k" * 30
    response = await client.post("/accounts/202", json={"unisender_key": key})
    assert response.status_code == 201
    assert key not in response.text
    async with services.sessions() as session:
        account = (await session.execute(select(Account).where(Account.id == 202))).scalar_one()
    assert account.unisender_key_enc is not None
    assert key not in account.unisender_key_enc
    assert services.cipher.decrypt(account.unisender_key_enc) == key
    for path in ("/accounts", "/accounts/202", "/accounts/integrations/202"):
        assert key not in (await client.get(path)).text
    assert not [line for line in captured_logs if key in line]


async def test_integrations_update_list_and_delete(
    client: httpx.AsyncClient, services: Services
) -> None:
    assert (await client.post("/accounts/303", json={})).status_code == 201
    secret = "integration-secret-" + "x" * 20
    put = await client.put(
        "/integrations/303",
        json={
            "client_id": "cid-1",
            "client_secret": secret,
            "redirect_uri": "https://a.test/vidget",
        },
    )
    assert put.status_code == 200, put.text
    assert put.json()["client_id"] == "cid-1"
    assert put.json()["has_tokens"] is False
    assert secret not in put.text
    listed = await client.get("/accounts/integrations/303")
    assert listed.status_code == 200
    assert [i["client_id"] for i in listed.json()["items"]] == ["cid-1"]
    assert secret not in listed.text
    async with services.sessions() as session:
        stored = (await session.execute(select(Integration))).scalar_one()
    assert stored.client_secret_enc
    assert secret not in stored.client_secret_enc

    missing = await client.delete("/integrations/303", params={"client_id": "nope"})
    assert missing.status_code == 404
    assert (await client.delete("/request/303", params={"client_id": "cid-1"})).status_code == 204
    assert (await client.get("/accounts/integrations/303")).json()["items"] == []


async def test_acchasuni_reflects_the_stored_key(client: httpx.AsyncClient) -> None:
    assert (await client.post("/accounts/404", json={})).status_code == 201
    off = await client.get("/acchasuni", params={"account_id": 404})
    assert off.json() == {"account_id": 404, "connected": False}
    unknown = await client.get("/acchasuni", params={"account_id": 405})
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "account_not_found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/accounts"),
        ("GET", "/accounts/1"),
        ("POST", "/accounts/1"),
        ("PUT", "/accounts/1"),
        ("DELETE", "/accounts/1"),
        ("GET", "/accounts/integrations/1"),
        ("PUT", "/integrations/1"),
        ("DELETE", "/integrations/1"),
        ("DELETE", "/request/1"),
        ("GET", "/acchasuni?account_id=1"),
    ],
)
async def test_admin_routes_need_the_token(anon: httpx.AsyncClient, method: str, path: str) -> None:
    response = await anon.request(method, path, json={})
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    wrong = await anon.request(method, path, json={}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_token"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "error"),
    [
        ("POST", "/accounts/abc", {"json": {}}, 422, "invalid_request"),
        ("POST", "/accounts/1", {"json": {"list_id": "seven"}}, 422, "invalid_request"),
        ("POST", "/accounts/1", {"json": {"unknown": 1}}, 422, "invalid_request"),
        (
            "POST",
            "/accounts/1",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/accounts/1",
            {"content": b"[]", "headers": {"content-type": "application/json"}},
            422,
            "invalid_request",
        ),
        ("PUT", "/accounts/999", {"json": {"name": "x"}}, 404, "account_not_found"),
        ("DELETE", "/accounts/999", {}, 404, "account_not_found"),
        ("GET", "/accounts/integrations/999", {}, 404, "account_not_found"),
        ("PUT", "/integrations/999", {"json": {"client_id": "x"}}, 404, "account_not_found"),
        ("GET", "/acchasuni", {}, 422, "invalid_request"),
        ("GET", "/acchasuni?account_id=-1", {}, 422, "invalid_request"),
        # Ids no column can hold, or that no account has, are refused up front.
        ("POST", "/accounts/0", {"json": {}}, 422, "invalid_request"),
        ("POST", "/accounts/-5", {"json": {}}, 422, "invalid_request"),
        ("GET", f"/accounts/{2**63}", {}, 422, "invalid_request"),
        ("GET", f"/acchasuni?account_id={2**63}", {}, 422, "invalid_request"),
        ("GET", f"/sync/{2**31}", {}, 422, "invalid_request"),
        ("GET", "/sync/0", {}, 422, "invalid_request"),
        ("GET", f"/accounts/sync?account_id={10**30}", {}, 422, "invalid_request"),
        ("POST", "/sync", {"json": {"account_id": 2**63}}, 422, "invalid_request"),
        ("GET", "/no/such/route", {}, 404, "not_found"),
        ("PATCH", "/accounts/1", {"json": {}}, 405, "method_not_allowed"),
    ],
)
async def test_bad_input_gets_a_clear_4xx(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    kwargs: dict[str, object],
    status: int,
    error: str,
) -> None:
    response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert isinstance(body["detail"], str)
    assert body["detail"]


async def test_a_body_over_one_megabyte_is_refused(client: httpx.AsyncClient) -> None:
    big = b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    response = await client.post(
        "/accounts/1", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert (await client.get("/accounts/1")).status_code == 404


async def test_health_ready_and_openapi(anon: httpx.AsyncClient) -> None:
    assert (await anon.get("/health")).json() == {"status": "ok"}
    assert (await anon.get("/ready")).json() == {"status": "ready"}
    spec = (await anon.get("/openapi.json")).json()
    assert "/accounts/{account_id}" in spec["paths"]
    assert (await anon.get("/docs")).status_code == 200
