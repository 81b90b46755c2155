"""The controls that fix problems, over real HTTP against the sandbox: `GET /unisender/lists`
(SPEC §3) for pickers, and the dashboard's key, list, retry and webhook forms (CSRF-bound,
checked with Unisender before anything is stored)."""

from __future__ import annotations

import contextlib
import re

import httpx
import pytest
from sqlalchemy import select

from amosync.consent.hooks import ensure_hook
from amosync.db.models import Account, SyncRun
from tests.conftest import ADMIN_TOKEN
from tests.stack import ACCOUNT_ID, UNISENDER_KEY, Stack, stack

PAGE = f"/ui/accounts/{ACCOUNT_ID}"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


async def operator(s: Stack) -> tuple[httpx.AsyncClient, str]:
    """A logged-in browser-like client of the stack's service, and a form's CSRF token."""
    http = httpx.AsyncClient(base_url=s.url, timeout=30)
    assert (await http.post("/login", data={"token": ADMIN_TOKEN})).status_code == 303
    match = CSRF.search((await http.get(PAGE)).text)
    assert match
    return http, match.group(1)


async def stored_key(s: Stack) -> str | None:
    async with s.services.sessions() as session:
        account = await session.scalar(select(Account).where(Account.id == ACCOUNT_ID))
        assert account is not None
        return s.services.cipher.decrypt_optional(account.unisender_key_enc)


async def test_unisender_lists_by_title(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        await s.connect_unisender()
        other = s.sandbox.unisender.create_list(UNISENDER_KEY, "Newsletter")

        admin = await s.http.get("/unisender/lists", params={"account_id": ACCOUNT_ID})
        widget = await s.http.get(
            "/unisender/lists",
            params={"account_id": ACCOUNT_ID},
            headers={"Authorization": "", **s.widget_headers()},
        )
        foreign = await s.http.get(
            "/unisender/lists",
            params={"account_id": ACCOUNT_ID},
            headers={"Authorization": "", **s.widget_headers(account_id=ACCOUNT_ID + 1)},
        )

        assert admin.status_code == 200, admin.text
        titles = {item["title"]: item["id"] for item in admin.json()["items"]}
        assert titles["Newsletter"] == other
        assert s.settings.unisender_list_title in titles
        assert widget.json() == admin.json()
        assert foreign.status_code == 403


async def test_unisender_lists_without_a_good_key_say_so(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        missing = await s.http.get("/unisender/lists", params={"account_id": ACCOUNT_ID})
        await s.connect_unisender()
        s.sandbox.unisender.remove_key(UNISENDER_KEY)
        refused = await s.http.get("/unisender/lists", params={"account_id": ACCOUNT_ID})
        absent = await s.http.get("/unisender/lists", params={"account_id": 999})

        assert (missing.status_code, missing.json()["error"]) == (400, "unisender_not_connected")
        assert (refused.status_code, refused.json()["error"]) == (400, "invalid_unisender_key")
        assert absent.status_code == 404


async def test_a_refused_key_from_the_dashboard_stores_nothing(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        http, token = await operator(s)
        async with contextlib.aclosing(http):
            refused = await http.post(
                f"{PAGE}/unisender-key", data={"csrf": token, "unisender_key": "wrong-key"}
            )
            empty = await http.post(f"{PAGE}/unisender-key", data={"csrf": token})
            forged = await http.post(f"{PAGE}/unisender-key", data={"unisender_key": "k"})
            page = await http.get(refused.headers["location"])

        assert refused.headers["location"] == f"{PAGE}?notice=key_refused"
        assert empty.headers["location"] == f"{PAGE}?notice=key_empty"
        assert forged.status_code == 403
        assert await stored_key(s) is None
        assert "wrong-key" not in page.text
        async with s.services.sessions() as session:
            assert (await session.execute(select(SyncRun))).first() is None


async def test_the_key_form_keeps_a_list_the_new_key_sees(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.connect()
        listed = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()["list_id"]
        http, token = await operator(s)
        async with contextlib.aclosing(http):
            again = await http.post(
                f"{PAGE}/unisender-key", data={"csrf": token, "unisender_key": UNISENDER_KEY}
            )
        assert again.headers["location"] == f"{PAGE}?notice=key_connected"
        assert (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()["list_id"] == listed
        assert len(s.sandbox.unisender.lists(UNISENDER_KEY)) == 1


@pytest.mark.parametrize("chosen", ["999999", "abc", ""])
async def test_a_list_the_key_does_not_see_is_refused(database_url: str, chosen: str) -> None:
    async with stack(database_url) as s:
        await s.connect()
        before = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()["list_id"]
        http, token = await operator(s)
        async with contextlib.aclosing(http):
            response = await http.post(f"{PAGE}/list", data={"csrf": token, "list_id": chosen})
        assert response.headers["location"] == f"{PAGE}/list?notice=list_unknown"
        assert (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()["list_id"] == before


async def test_a_stopped_unisender_hook_is_set_again_from_the_page(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.connect()
        hooks = s.sandbox.unisender.hooks
        # Unisender stopped it, the reconciliation pass saw that; stopped again since.
        assert hooks.stop(UNISENDER_KEY) == 1
        assert await ensure_hook(s.services, ACCOUNT_ID) is not None
        assert hooks.stop(UNISENDER_KEY) == 1
        shown = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()["problems"]
        assert [p["code"] for p in shown] == ["unisender_hook_stopped"]
        http, token = await operator(s)
        async with contextlib.aclosing(http):
            page = await http.get(PAGE, headers={"Accept-Language": "ru"})
            assert 'data-action="set-unisender-hook"' in page.text
            assert "Unisender перестал присылать отписки" in page.text

            response = await http.post(f"{PAGE}/unisender-hook", data={"csrf": token})

        assert response.headers["location"] == f"{PAGE}?notice=unisender_hook_set"
        assert [h["status"] for h in hooks.list_hooks(UNISENDER_KEY)] == ["active"]
        assert (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()["problems"] == []
