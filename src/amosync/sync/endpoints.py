"""Full sync and the synced/unsynced contact views (SPEC §3)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request, status
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from starlette.datastructures import QueryParams
from starlette.types import Receive, Scope, Send

from amosync.accounts import service as accounts
from amosync.accounts.deps import callers_account
from amosync.accounts.schemas import SyncRunOut
from amosync.amocrm.webhooks import parse_webhook
from amosync.db.models import Account, ConsentEvent, Contact
from amosync.errors import BadRequest, Unauthorized
from amosync.http.auth import CallerDep, url_token, url_token_openapi
from amosync.http.body import fields_for_account, json_or_form
from amosync.http.deps import ServicesDep, SessionDep
from amosync.http.ids import AccountIdQuery, RunIdPath
from amosync.http.middleware import MAX_BODY, BodyRefused, read_body
from amosync.http.pagination import Page
from amosync.runtime.crypto import token_hash
from amosync.runtime.metrics import webhooks_received
from amosync.runtime.services import Services
from amosync.segments.members import segment_lists
from amosync.sync import changes, service
from amosync.sync.mapping import normalize_email
from amosync.sync.schemas import (
    SyncedContact,
    SyncRequest,
    SyncStarted,
    UnsyncedContact,
    WebhookAccepted,
)

router = APIRouter(tags=["sync"])

Limit = Annotated[int, Query(ge=1, le=1000)]


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
    if account.status == "disconnected":
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
        SyncedContact(
            amocrm_id=row.amocrm_id,
            name=row.name,
            emails=list(row.emails or []),
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
    items = [
        UnsyncedContact(
            amocrm_id=row.amocrm_id,
            name=row.name,
            emails=list(row.emails or []),
            reason=row.reason,
            detail=row.detail,
        )
        for row in contacts.rows
    ]
    return Page(items=items, next_cursor=contacts.next_cursor)


WEBHOOK_OPENAPI = url_token_openapi(
    "the account's webhook secret, from the registered URL",
    {
        "application/x-www-form-urlencoded": {
            "schema": {"type": "object", "additionalProperties": {"type": "string"}}
        }
    },
)


async def accept_webhook(app: FastAPI, token: str | None, body: bytes) -> dict[str, object]:
    """amoCRM webhooks: stored durably before the answer, applied by the worker."""
    hashed = token_hash(url_token(token, url="webhook", code="invalid_webhook_token"))
    inbox = _inbox(app)
    account_id = await inbox.account_for(hashed)
    if account_id is None:
        raise Unauthorized("unknown webhook token", code="invalid_webhook_token")
    payload = parse_webhook(body)
    # Returns once committed (and the worker notified); None: the account is disconnected.
    counts = await inbox.store(account_id, hashed, payload)
    if counts is None:
        return {"accepted": 0, "ignored": True}
    webhooks_received.inc()
    return {"accepted": sum(counts.values()), **counts}


async def webhook(request: Request) -> Response:
    """amoCRM webhooks: stored durably before the answer, applied by the worker."""
    # Declares the route (OpenAPI, 405 for other methods); POSTs are answered by
    # `webhook_fast_path`, before the middleware stack, with the same function.
    content = await accept_webhook(
        request.app, request.query_params.get("token"), await request.body()
    )
    return Response(orjson.dumps(content), media_type="application/json")


async def webhook_fast_path(app: FastAPI, scope: Scope, receive: Receive, send: Send) -> None:
    """`POST /webhook` as a raw ASGI handler (see `amosync.app.App`)."""
    try:
        body = await read_body(scope, receive, MAX_BODY)
    except BodyRefused as refused:
        await refused.answer(send)
        return
    if body is None:
        return  # the client is gone: nothing was stored, nobody to answer
    token = QueryParams(scope["query_string"]).get("token")
    answer = orjson.dumps(await accept_webhook(app, token, body))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(answer)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer})


def _inbox(app: FastAPI) -> changes.WebhookInbox:
    """The app's webhook inbox, made on first use (it belongs to the running event loop).

    The hot path takes no dependency: `ServicesDep` is a sync function, which FastAPI runs
    in a thread pool, a thread hop per request.
    """
    inbox: changes.WebhookInbox | None = getattr(app.state, "webhook_inbox", None)
    if inbox is None:
        services: Services = app.state.services
        inbox = changes.WebhookInbox(services.engine, on_stored=services.notify_work)
        app.state.webhook_inbox = inbox
    return inbox


# `POST /webhook`, declared as an ordinary route (OpenAPI, 405 for other methods) on a router
# of its own that the app includes first, and answered by `webhook_fast_path` before the
# middleware stack: the app factory takes both as data (`App.fast_routes`).
webhook_router = APIRouter()
webhook_router.add_api_route(
    "/webhook",
    webhook,
    methods=["POST"],
    tags=["amoCRM"],
    response_model=WebhookAccepted,
    openapi_extra=WEBHOOK_OPENAPI,
)
FAST_ROUTES = {("POST", "/webhook"): webhook_fast_path}
