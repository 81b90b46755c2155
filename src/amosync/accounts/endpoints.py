"""Admin and widget routes for accounts and integrations (SPEC §3)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from pydantic import BaseModel

from amosync.accounts import install, repository, service
from amosync.accounts.deps import AccountDep, AccountQueryDep
from amosync.accounts.disconnect import unregister_quietly
from amosync.accounts.schemas import (
    AccountCreate,
    AccountOut,
    ConnectionOut,
    IntegrationOut,
    IntegrationUpdate,
)
from amosync.accounts.unisender import account_lists
from amosync.errors import NotFound
from amosync.http.auth import AdminDep
from amosync.http.deps import ServicesDep, SessionDep
from amosync.http.ids import AccountIdPath
from amosync.http.pagination import Limit, Page, decode_cursor, next_page

router = APIRouter(tags=["accounts"])


@router.post("/accounts/{account_id}", status_code=status.HTTP_201_CREATED)
async def create_account(
    account_id: AccountIdPath,
    body: AccountCreate,
    _: AdminDep,
    services: ServicesDep,
    session: SessionDep,
) -> AccountOut:
    """Create an account by hand."""
    account = await service.create(session, services.cipher, account_id, body)
    return (await service.views(session, [account]))[0]


@router.get("/accounts")
async def list_accounts(
    _: AdminDep, session: SessionDep, limit: Limit = 100, cursor: str | None = None
) -> Page[AccountOut]:
    """All accounts with status, Unisender connection, contact counts and last sync."""
    found = await repository.page(session, after=decode_cursor(cursor), limit=limit + 1)
    accounts, next_cursor = next_page(found, limit, key=lambda account: account.id)
    return Page(items=await service.views(session, accounts), next_cursor=next_cursor)


@router.get("/accounts/{account_id}")
async def get_account(account: AccountDep, session: SessionDep) -> AccountOut:
    """One account."""
    return (await service.views(session, [account]))[0]


@router.delete("/accounts/{account_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_account(
    account_id: AccountIdPath, _: AdminDep, services: ServicesDep, session: SessionDep
) -> Response:
    """Remove the account and everything of it; its webhooks are unregistered at amoCRM."""
    # Checked in a session of its own: the request's transaction starts only after the
    # unregistering wrote to the database, so SQLite sees a fresh snapshot.
    async with services.sessions() as check:
        await service.require(check, account_id)
    await unregister_quietly(services, account_id)
    account = await service.require(session, account_id, for_update=True)
    await session.delete(account)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/accounts/integrations/{account_id}")
async def list_integrations(account: AccountDep, session: SessionDep) -> Page[IntegrationOut]:
    """The account's integrations; never a token or secret."""
    integrations = await repository.integrations(session, account.id)
    return Page(items=[service.integration_view(i) for i in integrations])


@router.put("/integrations/{account_id}")
async def update_integration(
    account_id: AccountIdPath,
    body: IntegrationUpdate,
    _: AdminDep,
    services: ServicesDep,
    session: SessionDep,
) -> IntegrationOut:
    """Create or update an integration; a `code` is exchanged for tokens."""
    account = await service.require(session, account_id, for_update=True)
    integration = await service.upsert_integration(
        session,
        services.cipher,
        account,
        body,
        default_client_id=services.settings.amocrm_client_id,
        default_redirect_uri=services.settings.amocrm_redirect_uri,
    )
    if body.code is not None:
        await install.exchange_private_code(services, session, account, integration, body.code)
        services.notify_work()
    return service.integration_view(integration)


async def _delete_integrations(
    account_id: int, client_id: str | None, session: SessionDep
) -> Response:
    await service.require(session, account_id)
    deleted = await repository.delete_integrations(session, account_id, client_id)
    if client_id is not None and deleted == 0:
        raise NotFound(
            f"account {account_id} has no integration with client_id {client_id}",
            code="integration_not_found",
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/integrations/{account_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_integration(
    account_id: AccountIdPath, _: AdminDep, session: SessionDep, client_id: str | None = None
) -> Response:
    """Delete the account's integration(s) and tokens (`?client_id=` picks one)."""
    return await _delete_integrations(account_id, client_id, session)


@router.delete("/request/{account_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_request(
    account_id: AccountIdPath, _: AdminDep, session: SessionDep, client_id: str | None = None
) -> Response:
    """The same as `DELETE /integrations/{account_id}` (the seed's name)."""
    return await _delete_integrations(account_id, client_id, session)


@router.get("/acchasuni")
async def has_unisender(account: AccountQueryDep) -> ConnectionOut:
    """Whether a valid Unisender key is stored for the account."""
    return ConnectionOut(account_id=account.id, connected=service.is_connected(account))


class UnisenderListOut(BaseModel):
    id: int
    title: str


class UnisenderListsOut(BaseModel):
    items: list[UnisenderListOut]


@router.get("/unisender/lists")
async def unisender_lists(account: AccountQueryDep, services: ServicesDep) -> UnisenderListsOut:
    """The account's Unisender lists by id and title, for pickers (asked of Unisender with
    the account's key). 400 `unisender_not_connected` without a key, `invalid_unisender_key`
    when Unisender refuses it."""
    lists = await account_lists(services, account)
    return UnisenderListsOut(
        items=[UnisenderListOut(id=item.id, title=item.title) for item in lists]
    )
