"""Token refresh: single-flight across workers, revocation marks the account."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from amosync.accounts.tokens import DbTokenSource, amocrm_client, refresh_margin, token_lifetime
from amosync.db.models import Account, Integration, utcnow
from amosync.errors import AuthorizationRevoked
from amosync.runtime.services import build_services
from amosync.upstream.ratelimit import amocrm_key
from tests.stack import ACCOUNT_ID, stack


async def test_two_workers_spend_the_refresh_token_once(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        # Both workers see a token about to expire: both want to refresh.
        async with s.services.sessions() as session, session.begin():
            await session.execute(update(Integration).values(expires_at=utcnow()))
        other = build_services(s.settings)  # a second process: its own engine and sessions
        try:
            first = DbTokenSource(s.services, ACCOUNT_ID)
            second = DbTokenSource(other, ACCOUNT_ID)
            refreshes_before = s.sandbox.amocrm.refresh_count
            a, b = await asyncio.gather(first.access_token(), second.access_token())
        finally:
            await other.aclose()
        assert s.sandbox.amocrm.refresh_count == refreshes_before + 1
        assert a == b
        assert s.sandbox.amocrm.token_account(a) == ACCOUNT_ID
        async with s.services.sessions() as session:
            integration = (await session.execute(select(Integration))).scalar_one()
        assert integration.refresh_lock_owner is None
        assert s.services.cipher.decrypt(integration.access_token_enc or "") == a


async def test_a_revoked_refresh_token_puts_the_account_in_reauth_required(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        await s.install()
        s.sandbox.amocrm.revoke_tokens(ACCOUNT_ID)
        async with s.services.sessions() as session, session.begin():
            await session.execute(update(Integration).values(expires_at=utcnow()))
        with pytest.raises(AuthorizationRevoked):
            await DbTokenSource(s.services, ACCOUNT_ID).access_token()
        async with s.services.sessions() as session:
            account = await session.get(Account, ACCOUNT_ID)
        assert account is not None
        assert account.status == "reauth_required"
        listed = (await s.http.get("/accounts")).json()["items"]
        assert listed[0]["status"] == "reauth_required"


def test_the_refresh_margin_is_bounded_by_the_lifetime() -> None:
    assert refresh_margin(timedelta(days=1)) == timedelta(minutes=5)
    assert refresh_margin(timedelta(minutes=20)) == timedelta(minutes=5)
    assert refresh_margin(timedelta(seconds=60)) == timedelta(seconds=15)
    assert refresh_margin(timedelta(seconds=-1)) == timedelta(0)


async def test_the_lifetime_is_read_from_the_jwt(database_url: str) -> None:
    async with stack(database_url) as s:
        s.sandbox.amocrm.add_account(account_id=ACCOUNT_ID)
        s.sandbox.amocrm.access_token_ttl = 90
        assert s.settings.amocrm_client_id
        pair = s.sandbox.amocrm.issue_tokens(ACCOUNT_ID, s.settings.amocrm_client_id)
    assert token_lifetime(pair["access_token"]) == timedelta(seconds=90)
    assert token_lifetime(pair["refresh_token"]) is None  # not a JWT
    assert token_lifetime("") is None


async def test_a_short_lived_token_is_not_refreshed_on_every_call(database_url: str) -> None:
    async with stack(database_url) as s:
        s.sandbox.amocrm.access_token_ttl = 60
        await s.install()
        tokens = DbTokenSource(s.services, ACCOUNT_ID)
        refreshes = s.sandbox.amocrm.refresh_count
        first = await tokens.access_token()
        assert await tokens.access_token() == first
        assert s.sandbox.amocrm.refresh_count == refreshes  # 60 s left of 60: no refresh
        # Within a quarter of its lifetime of expiry it is refreshed, once.
        async with s.services.sessions() as session, session.begin():
            await session.execute(
                update(Integration).values(expires_at=utcnow() + timedelta(seconds=10))
            )
        fresh = await DbTokenSource(s.services, ACCOUNT_ID).access_token()
        assert fresh != first
        assert s.sandbox.amocrm.refresh_count == refreshes + 1


async def test_a_refresh_waits_for_the_account_rate_limit(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        tokens = DbTokenSource(s.services, ACCOUNT_ID)
        limiter = await tokens.limiter()
        # The install's exchange, account call and webhook registration drew from it too.
        assert limiter is s.services.limits.window(amocrm_key("acme.amocrm.ru"), 7)
        assert limiter is (await amocrm_client(s.services, ACCOUNT_ID)).limiter
        await asyncio.sleep(2 * limiter.period)  # the install's calls age out (margin <= period)
        filled = time.monotonic()
        for _ in range(limiter.limit):
            await limiter.acquire()
        assert time.monotonic() - filled < 0.5  # the window was free: no waiting to fill it
        async with s.services.sessions() as session, session.begin():
            await session.execute(update(Integration).values(expires_at=utcnow()))
        started = time.monotonic()
        await DbTokenSource(s.services, ACCOUNT_ID).access_token()  # reads the expiry anew
        assert time.monotonic() - started >= limiter.period
        refresh = s.sandbox.calls.matching(path="/oauth2/access_token")[-1]
        assert refresh.status == 200
