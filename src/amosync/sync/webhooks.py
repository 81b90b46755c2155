"""amoCRM's webhooks, the whole path: `POST /webhook` (a fast route, answered before the
middleware stack), the inbox that stores them durably before the answer (`WebhookInbox`,
with group commit), and what it stores (`record_many`).

`record_many` keeps only the latest state of each contact (by amoCRM's modification time,
so a late duplicate never overwrites a newer state) in `pending_changes`, the deals in
`pending_leads` (`sync.leads`), and queues one `changes` job per account in the same
transaction; the worker applies them (`sync.changes.apply_pending`). The webhook's tags and
other custom fields travel with the change (`pending_changes.data`) for the segment rules
and the field mapping.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from sqlalchemy import Table, bindparam, insert, literal, or_, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.datastructures import QueryParams
from starlette.types import Receive, Scope, Send

from amosync.amocrm.webhooks import ContactChange, WebhookPayload, parse_webhook
from amosync.db.engine import PreparedInsert, insert_for, prepared
from amosync.db.models import Account, AccountStatus, PendingChange, WebhookEvent, utcnow
from amosync.errors import Unauthorized
from amosync.http.auth import url_token, url_token_openapi
from amosync.http.middleware import MAX_BODY, BodyRefused, read_body
from amosync.runtime.crypto import token_hash
from amosync.runtime.metrics import webhooks_received
from amosync.runtime.services import Services
from amosync.sync.leads import record_leads
from amosync.sync.restore import NAME_LENGTH
from amosync.sync.schemas import WebhookAccepted
from amosync.sync.tasks import CHANGES
from amosync.worker.queue import insert_job, job_values
from amosync.worker.tasks import AccountJob

log = structlog.get_logger()

Received = tuple[int, WebhookPayload]  # (account id, the webhook's payload)


def change_data(change: ContactChange) -> dict[str, Any] | None:
    """What `pending_changes.data` keeps of a webhook's contact: None when it said nothing
    of tags or other fields, so most rows stay as small as before."""
    if not change.tags and not change.fields:
        return None
    return {"tags": change.tags, "fields": change.fields}


def _counts(payload: WebhookPayload) -> dict[str, int]:
    counts = {"added": 0, "updated": 0, "deleted": 0}
    for change in payload.changes:
        key = {"add": "added", "restore": "added", "update": "updated"}.get(
            change.raw_action, "deleted"
        )
        counts[key] += 1
    return counts


def _latest(received: Sequence[Received]) -> dict[tuple[int, int], tuple[int, ContactChange]]:
    """The state to keep of each contact: later in arrival order wins unless it is older by
    amoCRM's clock (a delete carries no time: it wins)."""
    latest: dict[tuple[int, int], tuple[int, ContactChange]] = {}
    for account_id, payload in received:
        for change in payload.changes:
            key = (account_id, change.amocrm_id)
            previous = latest.get(key)
            if (
                previous is None
                or change.updated_at is None
                or (previous[1].updated_at or 0) <= change.updated_at
            ):
                latest[key] = (account_id, change)
    return latest


PENDING_COLUMNS = (
    "account_id",
    "amocrm_id",
    "action",
    "name",
    "emails",
    "amocrm_updated_at",
    "version",
    "received_at",
    "data",
)
EVENT_COLUMNS = ("account_id", "received_at", "contact_ids", "added", "updated", "deleted")


def _upsert_pending(dialect: Dialect) -> PreparedInsert:
    """Insert a contact's pending state, or replace an older one."""
    table: Table = PendingChange.__table__  # type: ignore[assignment]
    statement = insert_for(dialect.name)(table)
    new = statement.excluded
    upsert = statement.on_conflict_do_update(
        index_elements=["account_id", "amocrm_id"],
        set_={
            "action": new.action,
            "name": new.name,
            "emails": new.emails,
            "amocrm_updated_at": new.amocrm_updated_at,
            "data": new.data,
            "version": table.c.version + 1,
            "received_at": new.received_at,
            # A new state has failed nothing yet.
            "attempts": literal(0),
        },
        # The latest state wins: an older delivery arriving late changes nothing.
        where=or_(
            table.c.amocrm_updated_at.is_(None),
            new.amocrm_updated_at.is_(None),
            new.amocrm_updated_at >= table.c.amocrm_updated_at,
        ),
    )
    return PreparedInsert(upsert, dialect, PENDING_COLUMNS)


def _queue_changes(dialect: Dialect) -> PreparedInsert:
    """The `changes` jobs of a batch's accounts, each joining its pending one if any."""
    job = insert_job(dialect.name, deduplicated=True)
    return PreparedInsert(job, dialect, tuple(job_values(CHANGES.kind, account_id=None)))


def _insert_events(dialect: Dialect) -> PreparedInsert:
    table: Table = WebhookEvent.__table__  # type: ignore[assignment]
    return PreparedInsert(insert(table), dialect, EVENT_COLUMNS)


async def record_many(
    connection: AsyncConnection, received: Sequence[Received]
) -> list[dict[str, int]]:
    """Store the contact changes of several webhooks in the caller's transaction and queue
    one `changes` job per account. Returns each webhook's counts, in order.

    On a Core connection, not an ORM session: the session's bulk-insert machinery cost more
    than the statements themselves, and this runs for every batch of webhooks."""
    counts = [_counts(payload) for _, payload in received]
    latest = _latest(received)
    leads = [(account_id, payload.leads) for account_id, payload in received if payload.leads]
    lead_accounts = await record_leads(connection, leads) if leads else set()
    if not latest and not lead_accounts:
        return counts
    now = utcnow()
    rows = [
        {
            "account_id": account_id,
            "amocrm_id": change.amocrm_id,
            "action": change.action,
            # A name is only shown (and sent as Unisender's Name): a longer one than the
            # column holds is cut rather than refused, or amoCRM would resend it forever.
            "name": change.name[:NAME_LENGTH] if change.name else change.name,
            "emails": change.emails,
            "amocrm_updated_at": change.updated_at,
            "version": 1,
            "received_at": now,
            "data": change_data(change),
        }
        for account_id, change in latest.values()
    ]
    # One row's statement run as executemany: it compiles once, where a multi-row VALUES
    # would compile anew for every batch size.
    if rows:
        await prepared(_upsert_pending, connection.dialect).run(connection, rows)
    events = [
        {
            "account_id": account_id,
            "received_at": now,
            "contact_ids": list(dict.fromkeys(str(c.amocrm_id) for c in payload.changes))[:20],
            **count,
        }
        for (account_id, payload), count in zip(received, counts, strict=True)
        if payload.changes
    ]
    await prepared(_insert_events, connection.dialect).run(connection, events)
    jobs = [
        CHANGES.values(AccountJob(account_id))
        for account_id in sorted({account_id for account_id, _ in latest.values()} | lead_accounts)
    ]
    await prepared(_queue_changes, connection.dialect).run(connection, jobs)
    return counts


# Built once: building and caching a SELECT anew for every batch cost more than running it.
_ACCOUNTS = select(Account.id, Account.status, Account.webhook_token_hash).where(
    Account.id.in_(bindparam("ids", expanding=True))
)


class WebhookInbox:
    """The webhook inbox: which account a token belongs to, and durable storage with group
    commit (the webhooks that arrive while one transaction commits go in the next one).

    One transaction per request would make every request wait its turn for the same few
    locks: SQLite's single writer (where waiters poll with sleeps) and, on PostgreSQL, the
    pending `changes:<account>` job row every request of an account upserts. `store`
    returns only once its webhook is committed, so a 2xx still means stored. A batch that
    fails is retried one webhook at a time, so a bad one fails alone.

    Tokens are remembered once seen, so a request needs no query of its own; the writer
    checks every token against the accounts table in the transaction that stores its
    webhook, so a token that stopped being valid is refused exactly as before.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        on_stored: Callable[[], None] | None = None,
        *,
        max_batch: int = 500,
        max_tokens: int = 100_000,
    ) -> None:
        self._engine = engine
        self._on_stored = on_stored
        self._max_batch = max_batch
        self._max_tokens = max_tokens
        self._accounts: dict[str, int] = {}  # token hash → account id
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None
        self._connection: AsyncConnection | None = None

    async def account_for(self, token_hash: str) -> int | None:
        """The account whose webhook token has this hash; None when there is none."""
        account_id = self._accounts.get(token_hash)
        if account_id is not None:
            return account_id
        async with self._engine.connect() as connection:
            query = select(Account.id).where(Account.webhook_token_hash == token_hash)
            account_id = (await connection.execute(query)).scalar_one_or_none()
        if account_id is None:
            return None
        if len(self._accounts) >= self._max_tokens:
            self._accounts.clear()
        self._accounts[token_hash] = account_id
        return account_id

    async def store(
        self, account_id: int, token_hash: str, payload: WebhookPayload
    ) -> dict[str, int] | None:
        """Store one webhook's changes; returns its counts once they are committed, or None
        when the account is disconnected (the webhook is dropped)."""
        future: asyncio.Future[dict[str, int] | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(account_id, token_hash, payload, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await future

    async def _write(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                await self._commit(batch)
        finally:
            # Cancelled (shutting down): nobody will store what is left.
            for waiting in self._waiting:
                waiting.settle(RuntimeError("the service is shutting down"))
            self._waiting.clear()

    async def _commit(self, batch: list[_Waiting]) -> None:
        try:
            connection = await self._connect()
            async with connection.begin():
                accepted = await self._check(connection, batch)
                counts = await record_many(
                    connection, [(w.account_id, w.payload) for w in accepted]
                )
        except Exception as exc:
            await self._disconnect()  # it may be what failed: the next batch takes another
            if len(batch) > 1:
                log.warning("webhook.batch.failed", webhooks=len(batch), error=type(exc).__name__)
                for waiting in batch:
                    await self._commit([waiting])
                return
            batch[0].settle(exc)
            return
        for waiting, count in zip(accepted, counts, strict=True):
            waiting.settle(count)
        if accepted and self._on_stored is not None:
            self._on_stored()

    async def _connect(self) -> AsyncConnection:
        """The writer's own connection, kept from one batch to the next: taking one from the
        pool (which pings it first on PostgreSQL) for every batch cost as much as a
        statement. Only the writer uses it, one transaction at a time."""
        if self._connection is None:
            self._connection = await self._engine.connect()
        return self._connection

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def aclose(self) -> None:
        """Give the writer's connection back (the service is stopping)."""
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        await self._disconnect()

    async def _check(self, connection: AsyncConnection, batch: list[_Waiting]) -> list[_Waiting]:
        """Settle the webhooks whose token is no longer valid or whose account is
        disconnected; returns the others."""
        rows = await connection.execute(_ACCOUNTS, {"ids": list({w.account_id for w in batch})})
        accounts = {account_id: (status, token) for account_id, status, token in rows}
        accepted = []
        for waiting in batch:
            status, token = accounts.get(waiting.account_id, (None, None))
            if token != waiting.token_hash:
                self._accounts.pop(waiting.token_hash, None)
                waiting.settle(Unauthorized("unknown webhook token", code="invalid_webhook_token"))
            elif status == AccountStatus.DISCONNECTED:
                # amoCRM retries refused deliveries; a disconnected account's are dropped.
                waiting.settle(None)
            else:
                accepted.append(waiting)
        return accepted


@dataclass(slots=True)
class _Waiting:
    account_id: int
    token_hash: str
    payload: WebhookPayload
    future: asyncio.Future[dict[str, int] | None]

    def settle(self, outcome: dict[str, int] | None | Exception) -> None:
        if self.future.done():  # the request was cancelled (client gone)
            return
        if isinstance(outcome, Exception):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)


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


def _inbox(app: FastAPI) -> WebhookInbox:
    """The app's webhook inbox, made on first use (it belongs to the running event loop).

    The hot path takes no dependency: `ServicesDep` is a sync function, which FastAPI runs
    in a thread pool, a thread hop per request.
    """
    inbox: WebhookInbox | None = getattr(app.state, "webhook_inbox", None)
    if inbox is None:
        services: Services = app.state.services
        inbox = WebhookInbox(services.engine, on_stored=services.notify_work)
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
