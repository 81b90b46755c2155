"""`PUT /accounts/{id}` checks a Unisender key with Unisender before storing it (SPEC §3)."""

from __future__ import annotations

from sqlalchemy import select

from amosync.db.models import Account
from tests.stack import ACCOUNT_ID, UNISENDER_KEY, Stack, stack


async def stored_key(s: Stack, account_id: int = ACCOUNT_ID) -> str | None:
    async with s.services.sessions() as session:
        account = await session.scalar(select(Account).where(Account.id == account_id))
        assert account is not None
        return s.services.cipher.decrypt_optional(account.unisender_key_enc)


async def test_a_key_unisender_refuses_is_not_stored(database_url: str) -> None:
    async with stack(database_url) as s:
        assert (await s.http.post(f"/accounts/{ACCOUNT_ID}", json={})).status_code == 201

        refused = await s.http.put(f"/accounts/{ACCOUNT_ID}", json={"unisender_key": "wrong-key"})

        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "invalid_unisender_key"
        assert await stored_key(s) is None
        view = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()
        assert view["unisender_connected"] is False
        # Asked once, with getLists, and nothing written at Unisender.
        assert s.sandbox.calls.by_path(api="unisender") == {"/ru/api/getLists": 1}


async def test_a_key_unisender_accepts_is_stored_and_connected(database_url: str) -> None:
    async with stack(database_url) as s:
        s.sandbox.unisender.add_key(UNISENDER_KEY)
        assert (await s.http.post(f"/accounts/{ACCOUNT_ID}", json={})).status_code == 201

        accepted = await s.http.put(
            f"/accounts/{ACCOUNT_ID}", json={"unisender_key": UNISENDER_KEY}
        )

        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["unisender_connected"] is True
        assert await stored_key(s) == UNISENDER_KEY


async def test_a_list_the_key_cannot_see_is_refused_with_the_key(database_url: str) -> None:
    async with stack(database_url) as s:
        s.sandbox.unisender.add_key(UNISENDER_KEY)
        assert (await s.http.post(f"/accounts/{ACCOUNT_ID}", json={})).status_code == 201

        refused = await s.http.put(
            f"/accounts/{ACCOUNT_ID}", json={"unisender_key": UNISENDER_KEY, "list_id": 987654}
        )

        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "unknown_list"
        assert await stored_key(s) is None


async def test_removing_the_key_calls_nobody(database_url: str) -> None:
    async with stack(database_url) as s:
        s.sandbox.unisender.add_key(UNISENDER_KEY)
        assert (await s.http.post(f"/accounts/{ACCOUNT_ID}", json={})).status_code == 201
        assert (
            await s.http.put(f"/accounts/{ACCOUNT_ID}", json={"unisender_key": UNISENDER_KEY})
        ).status_code == 200
        before = s.sandbox.calls.count_where(api="unisender")

        removed = await s.http.put(f"/accounts/{ACCOUNT_ID}", json={"unisender_key": None})

        assert removed.status_code == 200, removed.text
        assert removed.json()["unisender_connected"] is False
        assert await stored_key(s) is None
        assert s.sandbox.calls.count_where(api="unisender") == before
