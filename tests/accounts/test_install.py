"""The widget install flow end to end, over real HTTP against the sandbox."""

from __future__ import annotations

import time

import jwt
import pytest
from sqlalchemy import select

from amosync.db.models import Account, Integration
from tests.stack import ACCOUNT_ID, UNISENDER_KEY, stack


async def test_install_stores_encrypted_tokens_fetches_account_and_registers_webhooks(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        await s.install()
        async with s.services.sessions() as session:
            account = await session.get(Account, ACCOUNT_ID)
            integration = (await session.execute(select(Integration))).scalar_one()
        assert account is not None
        assert account.subdomain == "acme"
        assert account.name == "Acme"
        assert account.status == "active"
        assert integration.access_token_enc
        assert integration.refresh_token_enc
        access = s.services.cipher.decrypt(integration.access_token_enc)
        assert access not in integration.access_token_enc
        assert s.sandbox.amocrm.token_account(access) == ACCOUNT_ID
        assert integration.webhook_registered is True
        hooks = s.sandbox.amocrm.webhooks(ACCOUNT_ID)
        assert len(hooks) == 1
        assert hooks[0]["destination"].startswith(f"{s.url}/webhook?token=")
        assert set(hooks[0]["settings"]) == {
            "add_contact",
            "update_contact",
            "delete_contact",
            "restore_contact",
        }
        listed = await s.http.get("/accounts")
        assert listed.json()["items"][0]["status"] == "active"
        shown = await s.http.get(f"/accounts/integrations/{ACCOUNT_ID}")
        assert shown.json()["items"][0]["webhook_registered"] is True
        assert access not in shown.text


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"referer": "acme.evil.ru"}, "invalid_referer"),
        ({"referer": "evilamocrm.ru"}, "invalid_referer"),
        ({"referer": "acme.amocrm.ru.evil.com"}, "invalid_referer"),
        ({"client_id": "someone-elses-integration"}, "invalid_client_id"),
    ],
)
async def test_a_bad_referer_or_foreign_client_id_is_refused_without_any_call(
    database_url: str, params: dict[str, str], error: str
) -> None:
    async with stack(database_url) as s:
        s.sandbox.amocrm.add_account(account_id=ACCOUNT_ID, subdomain="acme", name="Acme")
        assert s.settings.amocrm_client_id
        code = s.sandbox.amocrm.issue_code(ACCOUNT_ID, s.settings.amocrm_client_id)
        query = {
            "code": code,
            "referer": "acme.amocrm.ru",
            "client_id": s.settings.amocrm_client_id,
        }
        query.update(params)
        response = await s.http.get("/vidget", params=query)
        assert response.status_code == 400
        assert response.json()["error"] == error
        await s.settle()
        assert s.sandbox.calls == []
        assert (await s.http.get("/accounts")).json()["items"] == []


async def test_a_bad_unisender_key_is_refused_and_nothing_is_stored(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        response = await s.http.post(
            "/vidget/unisender",
            json={"account_id": ACCOUNT_ID, "unisender_key": "not-a-real-key"},
            headers=s.widget_headers(),
        )
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_unisender_key"
        async with s.services.sessions() as session:
            account = await session.get(Account, ACCOUNT_ID)
        assert account is not None
        assert account.unisender_key_enc is None
        has = await s.http.get("/acchasuni", params={"account_id": ACCOUNT_ID})
        assert has.json() == {"account_id": ACCOUNT_ID, "connected": False}


async def test_a_good_key_connects_finds_the_list_and_queues_the_first_sync(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        await s.install()
        answer = await s.connect_unisender()
        assert answer["connected"] is True
        assert answer["run_id"]
        lists = s.sandbox.unisender.lists(UNISENDER_KEY)
        assert [item["title"] for item in lists] == ["amoCRM"]
        assert answer["list_id"] == lists[0]["id"]
        has = await s.http.get(
            "/acchasuni", params={"account_id": ACCOUNT_ID}, headers=s.widget_headers()
        )
        assert has.json() == {"account_id": ACCOUNT_ID, "connected": True}


async def test_widget_tokens_are_scoped_to_their_account(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        anon = {"Authorization": ""}
        own = await s.http.get(f"/accounts/{ACCOUNT_ID}", headers={**anon, **s.widget_headers()})
        assert own.status_code == 200
        other = await s.http.get(
            f"/accounts/{ACCOUNT_ID}", headers={**anon, **s.widget_headers(account_id=999)}
        )
        assert other.status_code == 403
        assert other.json()["error"] == "forbidden_account"
        foreign_post = await s.http.post(
            "/vidget/unisender",
            json={"account_id": ACCOUNT_ID, "unisender_key": UNISENDER_KEY},
            headers={**anon, **s.widget_headers(account_id=999)},
        )
        assert foreign_post.status_code == 403


async def test_expired_or_mis_signed_widget_tokens_get_401(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        now = int(time.time())
        claims = {
            "account_id": ACCOUNT_ID,
            "aud": s.settings.token_audience,
            "iat": now - 3600,
            "nbf": now - 3600,
            "exp": now - 1800,
        }
        assert s.settings.amocrm_client_secret
        expired = jwt.encode(claims, s.settings.amocrm_client_secret, algorithm="HS256")
        forged = jwt.encode(
            {**claims, "exp": now + 600, "iat": now, "nbf": now},
            "not-the-secret-but-long-enough-for-hs256",
            algorithm="HS256",
        )
        for token in (expired, forged, "garbage"):
            response = await s.http.get(
                "/acchasuni",
                params={"account_id": ACCOUNT_ID},
                headers={"Authorization": "", "X-Auth-Token": token},
            )
            assert response.status_code == 401, token
            assert response.json()["error"] in ("widget_token_expired", "invalid_widget_token")


async def test_a_private_integration_code_is_exchanged_by_put_integrations(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        s.sandbox.amocrm.add_account(account_id=ACCOUNT_ID, subdomain="acme", name="Acme")
        s.sandbox.amocrm.add_integration(
            "private-id", "private-secret-" + "p" * 30, "https://p.test/vidget"
        )
        assert (
            await s.http.post(f"/accounts/{ACCOUNT_ID}", json={"subdomain": "acme"})
        ).status_code == 201
        body = {
            "client_id": "private-id",
            "client_secret": "private-secret-" + "p" * 30,
            "redirect_uri": "https://p.test/vidget",
        }
        code = s.sandbox.amocrm.issue_code(ACCOUNT_ID, "private-id")
        response = await s.http.put(f"/integrations/{ACCOUNT_ID}", json={**body, "code": code})
        assert response.status_code == 200, response.text
        assert response.json()["has_tokens"] is True
        await s.settle()
        assert len(s.sandbox.amocrm.webhooks(ACCOUNT_ID)) == 1
        reused = await s.http.put(f"/integrations/{ACCOUNT_ID}", json={**body, "code": code})
        assert reused.status_code == 400
        assert reused.json()["error"] == "invalid_code"


async def test_deleting_an_account_unregisters_its_webhooks(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        assert len(s.sandbox.amocrm.webhooks(ACCOUNT_ID)) == 1
        assert (await s.http.delete(f"/accounts/{ACCOUNT_ID}")).status_code == 204
        assert s.sandbox.amocrm.webhooks(ACCOUNT_ID) == []
        assert (await s.http.get(f"/accounts/{ACCOUNT_ID}")).status_code == 404
