"""Logging out ends the session on the server: the cookie of a logged-out session, replayed
(by a stolen copy, a shared computer's cookie jar, a proxy's log), opens nothing, in any
process of the service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from sqlalchemy import func, select

from amosync.db.models import DashboardSession, SyncRun
from amosync.runtime.services import Services
from amosync.web.security import COOKIE
from tests.web.conftest import ACCOUNT_ID, account, add, csrf, csrf_of, dashboard_app, log_in


@asynccontextmanager
async def browser(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """A browser of its own, on an app of its own (as another `serve` process would be)."""
    transport = httpx.ASGITransport(app=dashboard_app(services), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://amosync.test") as http:
        yield http


def logged_in(page: httpx.Response) -> bool:
    return page.status_code == 200 and 'action="/logout"' in page.text


async def runs(services: Services) -> int:
    async with services.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(SyncRun)) or 0)


async def test_a_logged_out_cookie_replayed_is_refused(services: Services) -> None:
    await add(services, account(name="Globex Private"))
    async with browser(services) as first:
        assert (await log_in(first)).status_code == 303
        cookie = first.cookies[COOKIE]
        page = await first.get(f"/ui/accounts/{ACCOUNT_ID}")
        assert logged_in(page)
        token = csrf_of(page.text)
        out = await first.post("/logout", data={"csrf": token})
        assert out.status_code == 303
    async with browser(services) as replay:
        replay.cookies.set(COOKIE, cookie, domain="amosync.test")
        page = await replay.get("/")
        assert 'action="/login"' in page.text
        assert "Globex Private" not in page.text
        progress = await replay.get(f"/ui/accounts/{ACCOUNT_ID}/progress")
        assert progress.status_code == 401
        # The form token of the ended session opens nothing either.
        sync = await replay.post(f"/ui/accounts/{ACCOUNT_ID}/sync", data={"csrf": token})
        assert sync.status_code in (401, 403)
        assert await runs(services) == 0


async def test_logging_out_ends_only_that_session(services: Services) -> None:
    await add(services, account())
    async with browser(services) as laptop, browser(services) as phone:
        await log_in(laptop)
        await log_in(phone)
        await laptop.post("/logout", data={"csrf": await csrf(laptop)})
        assert not logged_in(await laptop.get("/"))
        assert logged_in(await phone.get("/"))


async def test_a_session_opened_in_one_process_works_in_another(services: Services) -> None:
    async with browser(services) as first, browser(services) as second:
        await log_in(first)
        second.cookies.set(COOKIE, first.cookies[COOKIE], domain="amosync.test")
        assert logged_in(await second.get("/"))
        await second.post("/logout", data={"csrf": await csrf(second)})
        assert not logged_in(await first.get("/"))


async def test_the_database_holds_no_cookie_only_its_hash(services: Services) -> None:
    async with browser(services) as web:
        await log_in(web)
        cookie = web.cookies[COOKIE]
        async with services.sessions() as session:
            stored = (await session.execute(select(DashboardSession))).scalars().all()
        assert len(stored) == 1
        assert cookie not in stored[0].id
        assert stored[0].expires_at > stored[0].created_at
