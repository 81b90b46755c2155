"""The widget install flow end to end, over real HTTP against the sandbox."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qsl

import jwt
import pytest
from sqlalchemy import Select, delete, select

from amosync.db.models import Account, Integration, Job
from tests.http.referers import HOSTILE_REFERERS
from tests.stack import ACCOUNT_ID, UNISENDER_KEY, Stack, stack

# amoCRM's widget install call as its documentation describes it (SOURCES.md beside it).
INSTALL_QUERY = Path(__file__).parents[1] / "fixtures" / "install" / "widget_install.query"


async def installed(s: Stack) -> tuple[Account, Integration]:
    """The account's row and its integration's, as the install stored them."""
    async with s.services.sessions() as session:
        account = await session.get(Account, ACCOUNT_ID)
        integration = (await session.execute(select(Integration))).scalar_one()
    assert account is not None
    return account, integration


async def test_install_stores_encrypted_tokens_fetches_account_and_registers_webhooks(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        await s.install()
        account, integration = await installed(s)
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


def documented_install_query(code: str) -> dict[str, str]:
    """The documented query string (code, referer, from_widget), with a sandbox code."""
    query = dict(parse_qsl(INSTALL_QUERY.read_text().strip(), strict_parsing=True))
    assert set(query) == {"code", "referer", "from_widget"}
    return {**query, "code": code}


async def test_the_documented_install_call_without_client_id_installs(database_url: str) -> None:
    async with stack(database_url) as s:
        s.sandbox.amocrm.add_account(account_id=ACCOUNT_ID, subdomain="acme", name="Acme")
        assert s.settings.amocrm_client_id
        code = s.sandbox.amocrm.issue_code(ACCOUNT_ID, s.settings.amocrm_client_id)
        response = await s.http.get("/vidget", params=documented_install_query(code))
        assert response.status_code == 200, response.text
        await s.settle()
        account, integration = await installed(s)
        assert account.status == "active"
        # The integration is ours: a call without client_id is for this service.
        assert integration.client_id == s.settings.amocrm_client_id
        assert integration.base_url == "https://acme.amocrm.ru"
        assert len(s.sandbox.amocrm.webhooks(ACCOUNT_ID)) == 1


async def _refused_without_a_call(s: Stack, query: dict[str, str], error: str) -> None:
    response = await s.http.get("/vidget", params=query)
    assert response.status_code == 400, (query, response.text)
    assert response.json()["error"] == error, query
    await s.settle()
    assert s.sandbox.calls == [], query
    assert await s.count(Job) == 0, query


async def test_hostile_referers_are_refused_and_nothing_is_called(database_url: str) -> None:
    async with stack(database_url) as s:
        s.sandbox.amocrm.add_account(account_id=ACCOUNT_ID, subdomain="acme", name="Acme")
        assert s.settings.amocrm_client_id
        code = s.sandbox.amocrm.issue_code(ACCOUNT_ID, s.settings.amocrm_client_id)
        for referer in HOSTILE_REFERERS:
            query = {**documented_install_query(code), "referer": referer}
            await _refused_without_a_call(s, query, "invalid_referer")


@pytest.mark.parametrize(
    "referer",
    ["acme.amocrm.ru", "ACME.AmoCRM.ru", "https://acme.amocrm.ru", "https://acme.amocrm.ru/"],
)
async def test_an_account_host_is_accepted_in_the_forms_amocrm_may_send(
    database_url: str, referer: str
) -> None:
    async with stack(database_url) as s:
        s.sandbox.amocrm.add_account(account_id=ACCOUNT_ID, subdomain="acme", name="Acme")
        assert s.settings.amocrm_client_id
        code = s.sandbox.amocrm.issue_code(ACCOUNT_ID, s.settings.amocrm_client_id)
        query = {**documented_install_query(code), "referer": referer}
        assert (await s.http.get("/vidget", params=query)).status_code == 200
        await s.settle()
        async with s.services.sessions() as session:
            integration = (await session.execute(select(Integration))).scalar_one()
        assert integration.base_url == "https://acme.amocrm.ru"


async def test_a_foreign_client_id_is_refused_while_a_missing_one_is_ours(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        s.sandbox.amocrm.add_account(account_id=ACCOUNT_ID, subdomain="acme", name="Acme")
        assert s.settings.amocrm_client_id
        code = s.sandbox.amocrm.issue_code(ACCOUNT_ID, s.settings.amocrm_client_id)
        query = {**documented_install_query(code), "client_id": "someone-elses-integration"}
        await _refused_without_a_call(s, query, "invalid_client_id")


def _install_jobs_query() -> Select[str, int, str | None]:
    return select(Job.status, Job.attempts, Job.last_error).where(Job.kind == "install")


@pytest.mark.parametrize("refusal", ["spent_code", "unknown_code", "wrong_secret"])
async def test_a_permanently_refused_install_fails_at_once(database_url: str, refusal: str) -> None:
    async with stack(database_url) as s:
        s.sandbox.amocrm.add_account(account_id=ACCOUNT_ID, subdomain="acme", name="Acme")
        client_id = s.settings.amocrm_client_id
        assert client_id
        assert s.settings.amocrm_redirect_uri
        code = s.sandbox.amocrm.issue_code(ACCOUNT_ID, client_id)
        if refusal == "spent_code":
            # Spend it first, as a second install call with the same code would.
            await s.http.get("/vidget", params=documented_install_query(code))
            await s.settle()
            async with s.services.engine.begin() as connection:
                await connection.execute(delete(Job))
        elif refusal == "unknown_code":
            code = "def50200" + "0" * 64
        else:  # amoCRM answers 401 when the secret is not the integration's
            s.sandbox.amocrm.add_integration(
                client_id, "another-secret-" + "x" * 40, s.settings.amocrm_redirect_uri
            )
        s.sandbox.calls.clear()
        response = await s.http.get("/vidget", params=documented_install_query(code))
        assert response.status_code == 200
        await s.settle()
        async with s.services.sessions() as session:
            jobs = (await session.execute(_install_jobs_query())).all()
        assert len(jobs) == 1
        status, attempts, error = jobs[0]
        assert (status, attempts) == ("failed", 1), error
        assert error is not None
        assert "authorization_code" in error
        oauth_calls = s.sandbox.calls.count_where(path="/oauth2/access_token")
        assert oauth_calls == 1


async def test_a_queued_install_with_a_host_we_now_refuse_fails_at_once(database_url: str) -> None:
    """A job an older version queued for a referer it let through: one attempt, no call."""
    from amosync.db.engine import transaction
    from amosync.worker.queue import enqueue

    async with stack(database_url) as s:
        async with transaction(s.services.sessions) as session:
            await enqueue(
                session,
                "install",
                account_id=None,
                payload={
                    "code": s.services.cipher.encrypt("def50200" + "0" * 64),
                    "host": "evil.com\\.amocrm.ru",
                    "client_id": s.settings.amocrm_client_id,
                },
                max_attempts=10,
            )
        await s.settle()
        async with s.services.sessions() as session:
            jobs = (await session.execute(_install_jobs_query())).all()
        status, attempts, error = jobs[0]
        assert (status, attempts) == ("failed", 1), error
        assert error is not None
        assert "not an account host name" in error
        assert s.sandbox.calls == []
