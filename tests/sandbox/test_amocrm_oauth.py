"""amoCRM OAuth as the sandbox plays it: single-use codes, refresh rotation, expiry."""

from __future__ import annotations

import asyncio

from tests.sandbox.conftest import ACCOUNT_ID, CLIENT_ID, Served

OAUTH_PROBLEM = "https://developers.amocrm.ru/v3/errors/OAuthProblemJson"


async def test_a_code_gives_a_token_pair_for_its_account(served: Served) -> None:
    pair = await served.install()
    assert pair["token_type"] == "Bearer"
    assert pair["expires_in"] == 86400
    assert pair["refresh_token"].startswith("def50200")
    assert served.amo.token_account(pair["access_token"]) == ACCOUNT_ID
    account = await served.api("GET", "/api/v4/account", pair["access_token"])
    assert account.status_code == 200
    assert account.json()["id"] == ACCOUNT_ID
    assert account.json()["subdomain"] == "acme"


async def test_a_code_works_once(served: Served) -> None:
    code = served.amo.issue_code(ACCOUNT_ID, CLIENT_ID)
    first = await served.token_request(grant_type="authorization_code", code=code)
    again = await served.token_request(grant_type="authorization_code", code=code)
    assert first.status_code == 200
    assert again.status_code == 400
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json() == {
        "hint": "Authorization code has been revoked",
        "title": "Некорректный запрос",
        "type": OAUTH_PROBLEM,
        "status": 400,
        "detail": "В запросе отсутствует ряд параметров или параметры невалидны",
    }


async def test_unknown_and_expired_codes_are_refused(served: Served) -> None:
    unknown = await served.token_request(grant_type="authorization_code", code="def50200nope")
    assert (unknown.status_code, unknown.json()["hint"]) == (
        400,
        "Cannot decrypt the authorization code",
    )
    served.amo.code_ttl = 0
    code = served.amo.issue_code(ACCOUNT_ID, CLIENT_ID)
    expired = await served.token_request(grant_type="authorization_code", code=code)
    assert (expired.status_code, expired.json()["hint"]) == (400, "Authorization code has expired")


async def test_wrong_client_secret_or_redirect_uri_is_refused(served: Served) -> None:
    code = served.amo.issue_code(ACCOUNT_ID, CLIENT_ID)
    bad_secret = await served.token_request(
        grant_type="authorization_code", code=code, client_secret="wrong"
    )
    assert bad_secret.status_code == 401
    assert bad_secret.json()["title"] == "Некорректный клиент"
    bad_redirect = await served.token_request(
        grant_type="authorization_code", code=code, redirect_uri="https://elsewhere.test/vidget"
    )
    assert bad_redirect.status_code == 400
    assert bad_redirect.json()["hint"] == "Redirect URI is not associated with client"
    bad_client = await served.token_request(
        grant_type="authorization_code", code=code, client_id="not-ours"
    )
    assert (bad_client.status_code, bad_client.json()["hint"]) == (
        400,
        "Check the `client_id` parameter",
    )
    # None of these spent the code.
    good = await served.token_request(grant_type="authorization_code", code=code)
    assert good.status_code == 200


async def test_the_token_endpoint_also_takes_a_form_body(served: Served) -> None:
    from tests.sandbox.conftest import CLIENT_SECRET, REDIRECT_URI

    code = served.amo.issue_code(ACCOUNT_ID, CLIENT_ID)
    response = await served.http.post(
        "/oauth2/access_token",
        data={
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uri": REDIRECT_URI,
            "grant_type": "authorization_code",
            "code": code,
        },
    )
    assert response.status_code == 200


async def test_refresh_rotates_the_pair_and_kills_the_old_refresh_token(served: Served) -> None:
    old = await served.install()
    fresh = await served.token_request(
        grant_type="refresh_token", refresh_token=old["refresh_token"]
    )
    assert fresh.status_code == 200
    new = fresh.json()
    assert new["refresh_token"] != old["refresh_token"]
    assert new["access_token"] != old["access_token"]
    assert served.amo.refresh_count == 1

    reused = await served.token_request(
        grant_type="refresh_token", refresh_token=old["refresh_token"]
    )
    assert reused.status_code == 401
    assert reused.json()["hint"] == "Token has been revoked"
    assert reused.json()["status"] == 401
    assert reused.json()["type"] == OAUTH_PROBLEM

    unknown = await served.token_request(grant_type="refresh_token", refresh_token="def50200zzz")
    assert (unknown.status_code, unknown.json()["hint"]) == (401, "Token has been revoked")
    # The new pair keeps working.
    again = await served.token_request(
        grant_type="refresh_token", refresh_token=new["refresh_token"]
    )
    assert again.status_code == 200
    assert served.amo.refresh_count == 2


async def test_access_tokens_expire(served: Served) -> None:
    served.amo.access_token_ttl = 1
    pair = await served.install()
    assert pair["expires_in"] == 1
    assert (await served.api("GET", "/api/v4/account", pair["access_token"])).status_code == 200
    await asyncio.sleep(1.1)
    expired = await served.api("GET", "/api/v4/account", pair["access_token"])
    assert expired.status_code == 401
    assert expired.headers["content-type"] == "application/problem+json"
    assert expired.json()["title"] == "Unauthorized"
    # The refresh token outlives the access token.
    refreshed = await served.token_request(
        grant_type="refresh_token", refresh_token=pair["refresh_token"]
    )
    assert refreshed.status_code == 200


async def test_unknown_tokens_and_revoked_tokens_get_401(served: Served) -> None:
    assert (await served.api("GET", "/api/v4/account", "made-up")).status_code == 401
    assert (await served.http.get("/api/v4/account")).status_code == 401
    pair = await served.install()
    served.amo.revoke_tokens(ACCOUNT_ID)
    assert (await served.api("GET", "/api/v4/account", pair["access_token"])).status_code == 401
    refused = await served.token_request(
        grant_type="refresh_token", refresh_token=pair["refresh_token"]
    )
    assert refused.status_code == 401
    assert served.amo.token_account(pair["access_token"]) is None


async def test_token_calls_are_logged_with_their_account(served: Served) -> None:
    await served.install()
    await served.token_request(grant_type="authorization_code", code="bogus")
    calls = served.sandbox.calls.matching(path="/oauth2/access_token")
    assert [(c.status, c.account_id) for c in calls] == [(200, ACCOUNT_ID), (400, None)]
