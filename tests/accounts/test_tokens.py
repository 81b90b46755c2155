"""Token refresh: single-flight across workers, revocation marks the account."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, update

from amosync.accounts.tokens import DbTokenSource
from amosync.db.models import Account, Integration, utcnow
from amosync.errors import AuthorizationRevoked
from amosync.state import build_services
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
