"""The account a route acts on, as a dependency: the caller may act on it, and it exists.

Only for routes without a body: FastAPI solves dependencies before it validates a body, so
a route with one checks the account itself, keeping its 422 ahead of the 403 and the 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from amosync.accounts import service
from amosync.db.models import Account
from amosync.http.auth import Caller, CallerDep
from amosync.http.deps import SessionDep
from amosync.http.ids import AccountIdPath, AccountIdQuery


async def callers_account(caller: Caller, session: AsyncSession, account_id: int) -> Account:
    """The account, once the caller is known to act on it (403) and it exists (404)."""
    caller.require_account(account_id)
    return await service.require(session, account_id)


async def _from_path(account_id: AccountIdPath, caller: CallerDep, session: SessionDep) -> Account:
    return await callers_account(caller, session, account_id)


async def _from_query(
    account_id: AccountIdQuery, caller: CallerDep, session: SessionDep
) -> Account:
    return await callers_account(caller, session, account_id)


# `/…/{account_id}` and `?account_id=`: the caller's account, in the request's session.
AccountDep = Annotated[Account, Depends(_from_path)]
AccountQueryDep = Annotated[Account, Depends(_from_query)]
