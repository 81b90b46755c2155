"""Account and integration logic. Services never commit: the request or job owns the transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from amosync.accounts import repository
from amosync.accounts.problems import Problem, problems_for
from amosync.accounts.schemas import (
    AccountCreate,
    AccountOut,
    AccountUpdate,
    ContactCounts,
    IntegrationOut,
    IntegrationUpdate,
    SyncRunOut,
)
from amosync.accounts.settings import parse as parse_settings
from amosync.db.models import Account, AccountStatus, Integration, SyncRun
from amosync.errors import BadRequest, Conflict, NotFound
from amosync.runtime.crypto import Cipher
from amosync.runtime.services import Services


def run_view(run: SyncRun) -> SyncRunOut:
    return SyncRunOut(
        run_id=run.id,
        account_id=run.account_id,
        status=run.status,
        fetched=run.fetched,
        synced=run.synced,
        unsynced=run.unsynced,
        failed=run.failed,
        started_at=run.started_at,
        finished_at=run.finished_at,
        error=run.error,
    )


def is_connected(account: Account) -> bool:
    return account.unisender_key_enc is not None and account.unisender_valid


@dataclass(frozen=True)
class AccountState:
    """An account with what every view of it shows beside its own columns: its contacts
    by state, its last full sync and its problems (the API's `AccountOut`, the
    dashboard's rows)."""

    account: Account
    contacts: ContactCounts
    last_run: SyncRun | None
    problems: list[Problem]


def _contact_counts(by_state: Mapping[str, int]) -> ContactCounts:
    return ContactCounts(
        synced=by_state.get("synced", 0),
        unsynced=by_state.get("unsynced", 0),
        pending=by_state.get("pending", 0),
        # Contacts known; a waiting change may be of one of them.
        total=sum(n for state, n in by_state.items() if state != "pending"),
    )


async def states(session: AsyncSession, accounts: Sequence[Account]) -> list[AccountState]:
    """The accounts' states in three queries, whatever their number."""
    ids = [account.id for account in accounts]
    counts = await repository.contact_counts(session, ids)
    runs = await repository.last_runs(session, ids)
    problems = await problems_for(session, ids)
    return [
        AccountState(
            account=account,
            contacts=_contact_counts(counts.get(account.id, {})),
            last_run=runs.get(account.id),
            problems=problems.get(account.id, []),
        )
        for account in accounts
    ]


def view(state: AccountState) -> AccountOut:
    account = state.account
    return AccountOut(
        id=account.id,
        subdomain=account.subdomain,
        name=account.name,
        status=account.status,
        unisender_connected=is_connected(account),
        list_id=account.list_id,
        settings=account.settings or {},
        contacts=state.contacts,
        last_sync=run_view(state.last_run) if state.last_run else None,
        problems=state.problems,
        created_at=account.created_at,
    )


async def views(session: AsyncSession, accounts: Sequence[Account]) -> list[AccountOut]:
    return [view(state) for state in await states(session, accounts)]


async def read_active(services: Services, account_id: int) -> Account | None:
    """The account as stored now, in a session of its own (a job's check before it calls a
    vendor), or None when it is gone or not active."""
    async with services.sessions() as session:
        account = await session.get(Account, account_id)
    return account if account is not None and account.status == AccountStatus.ACTIVE else None


async def require(session: AsyncSession, account_id: int, *, for_update: bool = False) -> Account:
    account = await repository.get(session, account_id, for_update=for_update)
    if account is None:
        raise NotFound(f"account {account_id} does not exist", code="account_not_found")
    return account


async def create(
    session: AsyncSession, cipher: Cipher, account_id: int, data: AccountCreate
) -> Account:
    if await repository.get(session, account_id) is not None:
        raise Conflict(f"account {account_id} already exists", code="account_exists")
    account = Account(id=account_id, status=AccountStatus.ACTIVE, settings={})
    apply_changes(account, cipher, data)
    if data.settings is not None:
        # Only the shape: a new account has no tokens or key to check the rest against.
        account.settings = parse_settings(data.settings).model_dump(mode="json")
    session.add(account)
    await session.flush()
    return account


def apply_changes(account: Account, cipher: Cipher, data: AccountCreate | AccountUpdate) -> None:
    """Everything but `settings`, which goes through `amosync.segments.service`."""
    fields = data.model_fields_set
    if "subdomain" in fields:
        account.subdomain = data.subdomain
    if "name" in fields:
        account.name = data.name
    if "list_id" in fields:
        account.list_id = data.list_id
    if "unisender_key" in fields:
        account.unisender_key_enc = cipher.encrypt_optional(data.unisender_key)
        # A key set by hand counts as connected once Unisender has accepted it
        # (checked by the caller before this runs, or at the first sync).
        account.unisender_valid = data.unisender_key is not None


def integration_view(integration: Integration) -> IntegrationOut:
    return IntegrationOut(
        client_id=integration.client_id,
        redirect_uri=integration.redirect_uri,
        base_url=integration.base_url,
        has_tokens=integration.access_token_enc is not None,
        token_expires_at=integration.expires_at,
        webhook_registered=integration.webhook_registered,
        created_at=integration.created_at,
        updated_at=integration.updated_at,
    )


async def upsert_integration(
    session: AsyncSession,
    cipher: Cipher,
    account: Account,
    data: IntegrationUpdate,
    *,
    default_client_id: str | None,
    default_redirect_uri: str | None,
) -> Integration:
    integration = await repository.integration(session, account.id, data.client_id)
    if integration is None:
        client_id = data.client_id or default_client_id
        if client_id is None:
            raise BadRequest(
                "client_id is required: the account has no integration yet and "
                "AMOSYNC_AMOCRM_CLIENT_ID is not set",
                code="client_id_required",
            )
        integration = Integration(
            account_id=account.id,
            client_id=client_id,
            redirect_uri=default_redirect_uri,
            token_version=0,
            webhook_registered=False,
        )
        session.add(integration)
    if data.client_secret is not None:
        integration.client_secret_enc = cipher.encrypt(data.client_secret)
    if data.redirect_uri is not None:
        integration.redirect_uri = data.redirect_uri
    await session.flush()
    return integration
