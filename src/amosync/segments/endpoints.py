"""The settings routes (SPEC §3, §8, §9): read, store, and what the forms pick from."""

from __future__ import annotations

from fastapi import APIRouter

from amosync.accounts import service as accounts
from amosync.accounts.settings import AccountSettings, account_settings
from amosync.http.auth import CallerDep
from amosync.http.deps import ServicesDep, SessionDep
from amosync.http.ids import AccountIdPath
from amosync.segments import service
from amosync.segments.schemas import Choices, SavedSettings

router = APIRouter(tags=["settings"])


@router.get("/accounts/{account_id}/settings")
async def get_settings(
    account_id: AccountIdPath, caller: CallerDep, session: SessionDep
) -> AccountSettings:
    """The account's settings: field mapping, segment lists, consent write-back."""
    caller.require_account(account_id)
    account = await accounts.require(session, account_id)
    return account_settings(account.settings)


@router.put("/accounts/{account_id}/settings")
async def put_settings(
    account_id: AccountIdPath,
    body: AccountSettings,
    caller: CallerDep,
    services: ServicesDep,
    session: SessionDep,
) -> SavedSettings:
    """Check the settings against Unisender and amoCRM, store the keys sent (the others stay
    as they are), and start a full sync when `fields` or `lists` changed (`sync`)."""
    caller.require_account(account_id)
    account = await accounts.require(session, account_id)
    return await service.save(services, session, account, body, body.model_fields_set)


@router.get("/accounts/{account_id}/settings/choices")
async def get_choices(
    account_id: AccountIdPath, caller: CallerDep, services: ServicesDep, session: SessionDep
) -> Choices:
    """Unisender lists, amoCRM contact fields, pipelines with statuses and tags, for the
    settings forms; a part is null, with its error code in `errors`, when its vendor fails."""
    caller.require_account(account_id)
    account = await accounts.require(session, account_id)
    return await service.choices(services, account)
