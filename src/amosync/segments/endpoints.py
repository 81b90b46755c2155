"""The settings routes (SPEC §3, §8, §9): read, store, and what the forms pick from; and
`PUT /accounts/{id}`, whose `settings` are stored as the settings route stores them (and
whose new key is the accounts' `key_changed`), so it is a segments workflow."""

from __future__ import annotations

from fastapi import APIRouter

from amosync.accounts import service as accounts
from amosync.accounts.deps import AccountDep, callers_account
from amosync.accounts.schemas import AccountOut, AccountUpdate
from amosync.accounts.settings import AccountSettings, account_settings
from amosync.accounts.unisender import check_key, key_changed, retire_hook
from amosync.db.models import utcnow
from amosync.http.auth import AdminDep, CallerDep
from amosync.http.deps import ServicesDep, SessionDep
from amosync.http.ids import AccountIdPath
from amosync.segments import service
from amosync.segments.schemas import Choices, SavedSettings
from amosync.segments.validate import check_rules

router = APIRouter(tags=["settings"])
# Included after `router` (its /accounts/{id}/settings first), listed with the accounts.
accounts_router = APIRouter(tags=["accounts"])


@router.get("/accounts/{account_id}/settings")
async def get_settings(account: AccountDep) -> AccountSettings:
    """The account's settings: field mapping, segment lists, consent write-back."""
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
    # Not `AccountDep`: the body's 422 comes before the account's 403 and 404.
    account = await callers_account(caller, session, account_id)
    return await service.save(services, session, account, body, body.model_fields_set)


@router.get("/accounts/{account_id}/settings/choices")
async def get_choices(account: AccountDep, services: ServicesDep) -> Choices:
    """Unisender lists, amoCRM contact fields, pipelines with statuses and tags, for the
    settings forms; a part is null, with its error code in `errors`, when its vendor fails."""
    return await service.choices(services, account)


@accounts_router.put("/accounts/{account_id}")
async def update_account(
    account_id: AccountIdPath,
    body: AccountUpdate,
    _: AdminDep,
    services: ServicesDep,
    session: SessionDep,
) -> AccountOut:
    """Change an account's name, subdomain, Unisender key, list or settings.

    A new Unisender key is checked with Unisender first (400 `invalid_unisender_key`, or
    `unknown_list` for a `list_id` sent with it that the key cannot see), and `settings`
    as `PUT /accounts/{id}/settings` checks them; nothing is stored unless all passes.
    """
    account = await accounts.require(session, account_id, for_update=True)
    if body.unisender_key is not None:
        await check_key(services, body.unisender_key, body.list_id)
        account.unisender_checked_at = utcnow()
    retired = None
    if "unisender_key" in body.model_fields_set:
        retired = retire_hook(services, account, body.unisender_key)
    accounts.apply_changes(account, services.cipher, body)
    await session.flush()
    if "unisender_key" in body.model_fields_set:
        await key_changed(session, account_id, retired=retired)
    if body.settings is not None:
        # As PUT /accounts/{id}/settings does it, with the key and list just set.
        settings = service.parse(body.settings)
        await service.save(services, session, account, settings, settings.model_fields_set)
    elif "list_id" in body.model_fields_set:
        # A main list that a segment rule fills would lose every contact the rule leaves.
        check_rules(account_settings(account.settings), account.list_id)
    return (await accounts.views(session, [account]))[0]
