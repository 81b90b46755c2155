"""Full sync and the synced/unsynced contact views (SPEC §3); the webhook route is
`sync.webhooks`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import JSONResponse
from sqlalchemy import select

from amosync.accounts import service as accounts
from amosync.accounts.deps import callers_account
from amosync.accounts.schemas import SyncRunOut
from amosync.db.models import Account, AccountStatus, ConsentEvent, Contact
from amosync.errors import BadRequest
from amosync.http.auth import CallerDep
from amosync.http.body import fields_for_account, json_or_form
from amosync.http.deps import ServicesDep, SessionDep
from amosync.http.ids import AccountIdQuery, RunIdPath
from amosync.http.pagination import Limit, Page
from amosync.segments.members import segment_lists
from amosync.sync import service
from amosync.sync.mapping import normalize_email
from amosync.sync.schemas import (
    SyncedContact,
    SyncRequest,
    SyncStarted,
    UnsyncedContact,
)

router = APIRouter(tags=["sync"])


@router.post(
    "/sync",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SyncStarted,
    openapi_extra=json_or_form(SyncRequest),
)
async def start_sync(
    body: Annotated[SyncRequest, Depends(fields_for_account(SyncRequest))],
    services: ServicesDep,
    session: SessionDep,
) -> JSONResponse:
    """Start a full sync of the account (JSON or form body); returns the active run if one is."""
    account = await accounts.require(session, body.account_id)
    if account.status == AccountStatus.DISCONNECTED:
        # Its tokens and key are gone: a run could only fail. Say so now, as POST
        # /vidget/unisender does, rather than queue a run that fails in the worker.
        raise BadRequest(
            "the account is disconnected; install the widget again", code="account_disconnected"
        )
    run, created = await service.start_full_sync(session, body.account_id)
    if created:
        services.notify_work()
    return JSONResponse(SyncStarted(run_id=run.id, status=run.status).model_dump(), status_code=202)


@router.get("/sync/{run_id}")
async def get_sync(run_id: RunIdPath, caller: CallerDep, session: SessionDep) -> SyncRunOut:
    """Progress of a full sync."""
    run = await service.get_run(session, run_id)
    caller.require_account(run.account_id)
    return accounts.run_view(run)


@dataclass(frozen=True)
class Contacts:
    """A page of the account's contacts in one state, as both contact views ask for it."""

    account_id: int
    rows: Sequence[Contact]
    next_cursor: str | None


def _contacts_in(state: str) -> Callable[..., Awaitable[Contacts]]:
    """The dependency reading one page of contacts in `state`: the views' query
    (`?account_id=&limit=&cursor=&search=`), checked as every account route checks it."""

    async def contacts(
        account_id: AccountIdQuery,
        caller: CallerDep,
        session: SessionDep,
        limit: Limit = 100,
        cursor: str | None = None,
        search: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Contacts:
        await callers_account(caller, session, account_id)
        rows, next_cursor = await service.contacts_page(
            session, account_id, state=state, cursor=cursor, limit=limit, search=search
        )
        return Contacts(account_id, rows, next_cursor)

    return contacts


@router.get("/accounts/sync")
async def synced_contacts(
    contacts: Annotated[Contacts, Depends(_contacts_in("synced"))], session: SessionDep
) -> Page[SyncedContact]:
    """Contacts with at least one address in the list."""
    account_id, rows = contacts.account_id, contacts.rows
    wanted = {normalize_email(email) for row in rows for email in row.emails or []}
    gone = (
        set(
            (
                await session.execute(
                    select(ConsentEvent.email)
                    .where(ConsentEvent.account_id == account_id, ConsentEvent.email.in_(wanted))
                    .distinct()
                )
            ).scalars()
        )
        if wanted
        else set()
    )
    main = await session.scalar(select(Account.list_id).where(Account.id == account_id))
    segments = await segment_lists(session, account_id, [row.amocrm_id for row in rows])
    items = [
        SyncedContact.of(
            row,
            synced_at=row.synced_at,
            unsubscribed=[e for e in row.emails or [] if normalize_email(e) in gone],
            lists=([main] if main is not None else []) + segments.get(row.amocrm_id, []),
        )
        for row in rows
    ]
    return Page(items=items, next_cursor=contacts.next_cursor)


@router.get("/accounts/unsync")
async def unsynced_contacts(
    contacts: Annotated[Contacts, Depends(_contacts_in("unsynced"))],
) -> Page[UnsyncedContact]:
    """Contacts that could not be synced, with their reason."""
    items = [UnsyncedContact.of(row, reason=row.reason, detail=row.detail) for row in contacts.rows]
    return Page(items=items, next_cursor=contacts.next_cursor)
