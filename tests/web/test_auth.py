"""Logging in to the dashboard: the token form, the session cookie, CSRF, logout."""

from __future__ import annotations

import time

import httpx
from sqlalchemy import func, select

from amosync.db.models import SyncRun
from amosync.runtime.services import Services
from amosync.web.security import (
    COOKIE,
    MAX_AGE_SECONDS,
    new_session_cookie,
    verify_session_cookie,
)
from tests.conftest import ADMIN_TOKEN
from tests.web.conftest import ACCOUNT_ID, account, add, csrf, csrf_of, log_in


async def runs(services: Services) -> int:
    async with services.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(SyncRun)) or 0)


async def test_anonymous_visitor_sees_only_the_login_form(
    web: httpx.AsyncClient, services: Services
) -> None:
    await add(services, account(name="Globex Private"))

    response = await web.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'action="/login"' in response.text
    assert 'type="password" name="token"' in response.text
    assert "Globex Private" not in response.text


async def test_wrong_token_is_refused_with_the_form_again(web: httpx.AsyncClient) -> None:
    response = await log_in(web, "not-the-token")

    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert 'data-role="login-error"' in response.text
    assert 'action="/login"' in response.text
    assert COOKIE not in web.cookies
    assert 'action="/login"' in (await web.get("/")).text


async def test_empty_token_is_refused(web: httpx.AsyncClient) -> None:
    response = await web.post("/login", data={"token": ""})
    assert response.status_code == 401
    assert "set-cookie" not in response.headers


async def test_login_sets_an_httponly_strict_session_cookie_that_is_not_the_token(
    web: httpx.AsyncClient, services: Services
) -> None:
    await add(services, account(name="Globex Private"))

    response = await log_in(web)

    assert response.status_code == 303
    assert response.headers["location"] == "/"
    header = response.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert {"httponly", "path", "samesite"} <= attributes
    assert "samesite=strict" in header.lower()
    # A session cookie: it ends with the browser session.
    assert "max-age" not in attributes
    assert "expires" not in attributes
    value = web.cookies[COOKIE]
    assert ADMIN_TOKEN not in value
    assert value != ADMIN_TOKEN
    page = await web.get("/")
    assert "Globex Private" in page.text


async def test_every_login_gets_its_own_cookie(web: httpx.AsyncClient) -> None:
    first = (await log_in(web)).cookies[COOKIE]
    second = (await log_in(web)).cookies[COOKIE]
    assert first != second


async def test_a_forged_cookie_or_the_raw_token_is_not_a_session(
    web: httpx.AsyncClient, services: Services
) -> None:
    await add(services, account(name="Globex Private"))
    genuine = new_session_cookie(ADMIN_TOKEN)
    tampered = genuine[:-1] + ("0" if genuine[-1] != "0" else "1")
    for value in (ADMIN_TOKEN, tampered, "v1.1.x.00", new_session_cookie("another-token")):
        web.cookies.set(COOKIE, value, domain="amosync.test")
        page = await web.get("/")
        assert 'action="/login"' in page.text, value
        assert "Globex Private" not in page.text


def test_a_cookie_expires_and_dies_with_the_admin_token() -> None:
    now = time.time()
    cookie = new_session_cookie(ADMIN_TOKEN, now=now)

    assert verify_session_cookie(ADMIN_TOKEN, cookie, now=now + 60) is not None
    assert verify_session_cookie(ADMIN_TOKEN, cookie, now=now + MAX_AGE_SECONDS + 1) is None
    assert verify_session_cookie("rotated-admin-token", cookie, now=now) is None
    assert verify_session_cookie(ADMIN_TOKEN, None) is None


async def test_a_page_asks_for_login_then_comes_back(
    web: httpx.AsyncClient, services: Services
) -> None:
    await add(services, account())

    response = await web.get(f"/ui/accounts/{ACCOUNT_ID}")

    assert response.status_code == 303
    assert response.headers["location"] == f"/?next=%2Fui%2Faccounts%2F{ACCOUNT_ID}"
    form = await web.get(response.headers["location"])
    assert f'name="next" value="/ui/accounts/{ACCOUNT_ID}"' in form.text
    login = await web.post(
        "/login", data={"token": ADMIN_TOKEN, "next": f"/ui/accounts/{ACCOUNT_ID}"}
    )
    assert login.headers["location"] == f"/ui/accounts/{ACCOUNT_ID}"


async def test_login_never_redirects_off_site(web: httpx.AsyncClient) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"):
        response = await web.post("/login", data={"token": ADMIN_TOKEN, "next": target})
        assert response.headers["location"] == "/", target


async def test_progress_needs_a_session(web: httpx.AsyncClient, services: Services) -> None:
    await add(services, account())

    response = await web.get(f"/ui/accounts/{ACCOUNT_ID}/progress")

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.json()["detail"]


async def test_the_api_bearer_token_does_not_open_the_dashboard(
    web: httpx.AsyncClient, services: Services
) -> None:
    # The dashboard takes its own session only, so its CSRF protection cannot be
    # side-stepped with a header.
    await add(services, account(name="Globex Private"))
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    page = await web.get("/", headers=bearer)
    progress = await web.get(f"/ui/accounts/{ACCOUNT_ID}/progress", headers=bearer)

    assert "Globex Private" not in page.text
    assert progress.status_code == 401


async def test_a_post_without_session_changes_nothing(
    web: httpx.AsyncClient, services: Services
) -> None:
    await add(services, account())

    response = await web.post(f"/ui/accounts/{ACCOUNT_ID}/sync", data={"csrf": "0" * 64})

    assert response.status_code == 401
    assert await runs(services) == 0


async def test_a_post_without_the_csrf_token_is_refused(
    operator: httpx.AsyncClient, services: Services
) -> None:
    await add(services, account())

    for data in ({}, {"csrf": ""}, {"csrf": "0" * 64}):
        response = await operator.post(f"/ui/accounts/{ACCOUNT_ID}/sync", data=data)
        assert response.status_code == 403, data
        assert "form has expired" in response.text
    assert await runs(services) == 0


async def test_a_csrf_token_works_only_with_its_own_session(
    web: httpx.AsyncClient, services: Services
) -> None:
    await add(services, account())
    await log_in(web)
    stale = await csrf(web)
    await log_in(web)  # a new session: the old page's token no longer matches

    response = await web.post(f"/ui/accounts/{ACCOUNT_ID}/sync", data={"csrf": stale})

    assert response.status_code == 403
    assert await runs(services) == 0
    fresh = await csrf(web)
    response = await web.post(f"/ui/accounts/{ACCOUNT_ID}/sync", data={"csrf": fresh})
    assert response.status_code == 303
    assert await runs(services) == 1


async def test_logout_ends_the_session(operator: httpx.AsyncClient, services: Services) -> None:
    await add(services, account(name="Globex Private"))
    token = csrf_of((await operator.get("/")).text)

    refused = await operator.post("/logout", data={"csrf": "0" * 64})
    assert refused.status_code == 403
    response = await operator.post("/logout", data={"csrf": token})

    assert response.status_code == 303
    assert response.headers["location"] == "/?notice=logged_out"
    assert COOKIE not in operator.cookies
    page = await operator.get(response.headers["location"])
    assert 'action="/login"' in page.text
    assert "You are logged out." in page.text
    assert "Globex Private" not in page.text
