"""Unisender API: lists, user fields, importContacts, exclude, getContact, and the hooks
(setHook, listHooks, removeHook) that tell us of unsubscribes.

Every call is `POST {base}/{method}?format=json` with a form body. The API key travels in the
body, never in the URL, so it cannot end up in an access log or a proxy's. Array arguments use
indexed keys (`field_names[0]`, `data[0][0]`), the PHP convention Unisender expects.

Unisender answers errors with HTTP 200 and `{"error": message, "code": code}`:

    invalid_api_key, access_denied                   InvalidApiKey (stop the account's sync)
    retry_later, api_call_limit_exceeded_for_*       TransientUpstreamError, retried in place
    anything else (invalid_arg, unspecified, ...)     PermanentUpstreamError with the code

HTTP 429, 5xx and timeouts are transient as well; `amosync.upstream.retry` retries transient
errors a few times, then they reach the worker, which reschedules the job.
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote_plus

import httpx
import orjson
import structlog
from aiolimiter import AsyncLimiter
from pydantic import TypeAdapter, ValidationError
from typing_extensions import Unpack

from amosync.errors import (
    InvalidApiKey,
    PermanentUpstreamError,
    TransientUpstreamError,
    UpstreamError,
)
from amosync.unisender.models import (
    ImportResult,
    ImportRow,
    MailList,
    UnisenderContact,
    UnisenderField,
    UnisenderHook,
)
from amosync.upstream.client import ClientOptions, UpstreamClient, transient_answer
from amosync.upstream.redact import body_excerpt

log = structlog.get_logger()
T = TypeVar("T")
M = TypeVar("M")

API = "unisender"
MAX_IMPORT_ROWS = 500
KEY_CODES = frozenset({"invalid_api_key", "access_denied"})
RATE_LIMIT_CODES = frozenset(
    {"api_call_limit_exceeded_for_api_key", "api_call_limit_exceeded_for_ip"}
)
TRANSIENT_CODES = RATE_LIMIT_CODES | {"retry_later"}
# Unisender reports an unknown address as an `unspecified` error, in the API's language.
_NOT_FOUND = ("not found", "не найден")
# How a createField refusal may say the field exists (assumed: the wording is not published).
_EXISTS = ("already exists", "уже существует")

_LISTS = TypeAdapter(list[MailList])
_FIELDS = TypeAdapter(list[UnisenderField])
_HOOKS = TypeAdapter(list[UnisenderHook])


class FieldNotCreated(PermanentUpstreamError):
    """Unisender refused to create a user field an import needs (a name it does not take,
    too many fields): no row of the import can go until the settings change.

    It carries no `code` (Unisender's is in the message, and in `refusal`): the code of a
    refused importContacts is what tells a refusal about one row from one about the call,
    and this one is about every row.
    """

    def __init__(self, name: str, refusal: PermanentUpstreamError) -> None:
        super().__init__(
            f"createField {name!r}: {refusal.message} ({refusal.code or 'no code'})",
            api=API,
            status=refusal.status,
            body=refusal.body,
        )
        self.field = name
        self.refusal = refusal


def encode_form(pairs: Iterable[tuple[str, str]]) -> bytes:
    """An `application/x-www-form-urlencoded` body."""
    return "&".join(f"{quote_plus(key)}={quote_plus(value)}" for key, value in pairs).encode()


_IMPORT_FIELDS = encode_form(
    [("field_names[0]", "email"), ("field_names[1]", "Name"), ("field_names[2]", "email_list_ids")]
).decode()


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~@-]*")


def _form_value(value: str) -> str:
    """quote_plus, without its cost for the plain ASCII most addresses are, nor for the
    non-ASCII names (Cyrillic) it quotes a byte at a time in Python: those have every
    UTF-8 byte escaped in C, which decodes to the same text."""
    if _UNRESERVED.fullmatch(value):
        return value.replace("@", "%40")
    if value.isascii():
        return quote_plus(value)
    return "%" + value.encode().hex("%").upper()


# Unisender takes at most 50 columns in one importContacts call.
MAX_COLUMNS = 50
FIXED_COLUMNS = ("email", "Name", "email_list_ids")
# Unisender's own columns of importContacts (its documentation's "special values for
# field_names"), lower case. `phone` and `tags` are the two amosync fills; the others are
# never sent from a row's `fields`: `email_status` would undo an unsubscribe, `delete`
# would delete the contact, and a user field cannot have these names.
PHONE, TAGS = "phone", "tags"
SYSTEM_COLUMNS = frozenset(
    {
        "email",
        "name",  # not a system column but a user field every account has: the row's name
        "delete",
        PHONE,
        TAGS,
        *(
            f"{channel}_{suffix}"
            for channel in ("email", "phone")
            for suffix in (
                "status",
                "availability",
                "list_ids",
                "subscribe_times",
                "unsubscribed_list_ids",
                "excluded_list_ids",
            )
        ),
    }
)


def _column(key: str) -> str | None:
    """The column a row's `fields` key fills: `phone`, `tags`, a user field, or None for a
    name a row may not set (see SYSTEM_COLUMNS)."""
    lowered = key.lower()
    if lowered in (PHONE, TAGS):
        return lowered
    if lowered in SYSTEM_COLUMNS or not key:
        return None
    return key


def import_columns(rows: Iterable[ImportRow]) -> list[str]:
    """The columns past email, Name and email_list_ids that `rows` need: `phone`, `tags`,
    then user fields sorted by name (so every batch of an account has them in one order).
    A column is needed when at least one row has a value for it."""
    seen: set[str] = set()
    for row in rows:
        if row.fields:
            seen.update(key for key, value in row.fields.items() if value)
    columns = {column for key in seen if (column := _column(key)) is not None}
    system = [name for name in (PHONE, TAGS) if name in columns]
    return system + sorted(columns - {PHONE, TAGS})


def user_fields(columns: Iterable[str]) -> list[str]:
    """The user fields among import columns: those Unisender must have before the import."""
    return [column for column in columns if column.lower() not in SYSTEM_COLUMNS]


def encode_import(api_key: str, rows: Sequence[ImportRow], list_id: int) -> bytes:
    """The `importContacts` body: columns email, Name, email_list_ids, and the union of the
    other columns the rows carry (see `import_columns`).

    Written by hand because it is the hot path of a full sync (one call per 500 addresses);
    `email_status` is deliberately absent, so an address that unsubscribed stays so.
    """
    list_value = quote_plus(str(list_id))
    parts = [f"api_key={quote_plus(api_key)}", _IMPORT_FIELDS]
    for index, row in enumerate(rows):
        if row.fields is not None or row.list_ids is not None:
            # Rows with lists or columns of their own are what segment settings make; a
            # sync without them keeps this loop, and its speed, as it was.
            return _encode_with_columns(api_key, rows, list_value)
        prefix = f"data%5B{index}%5D%5B"
        parts.append(
            f"{prefix}0%5D={_form_value(row.email)}"
            f"&{prefix}1%5D={_form_value(row.name)}"
            f"&{prefix}2%5D={list_value}"
        )
    return "&".join(parts).encode()


def _encode_with_columns(api_key: str, rows: Sequence[ImportRow], list_value: str) -> bytes:
    columns = import_columns(rows)
    names = [*FIXED_COLUMNS, *columns]
    if len(names) > MAX_COLUMNS:
        raise ValueError(
            f"importContacts takes at most {MAX_COLUMNS} columns, these rows need {len(names)}"
        )
    parts = [
        f"api_key={quote_plus(api_key)}",
        encode_form((f"field_names[{i}]", name) for i, name in enumerate(names)).decode(),
    ]
    if TAGS in columns:
        # Tags are added to the ones the contact has, never replaced: a tag a marketer set
        # in Unisender stays, and one removed in amoCRM is not taken away (SPEC §8).
        parts.append("overwrite_tags=0")
    first = len(FIXED_COLUMNS)
    # Lists, tags and many field values repeat from row to row, and quoting them is most
    # of the cost: each distinct value is quoted once a call.
    quoted: dict[str, str] = {"": ""}
    for index, row in enumerate(rows):
        prefix = f"data%5B{index}%5D%5B"
        lists = list_value if row.list_ids is None else _quoted(row.list_ids, quoted)
        cells = [
            f"{prefix}0%5D={_form_value(row.email)}"
            f"&{prefix}1%5D={_form_value(row.name)}"
            f"&{prefix}2%5D={lists}"
        ]
        if columns:
            values = _cells(row.fields)
            for offset, column in enumerate(columns, first):
                cells.append(f"{prefix}{offset}%5D={_quoted(values.get(column, ''), quoted)}")
        parts.append("&".join(cells))
    return "&".join(parts).encode()


def _quoted(value: str, seen: dict[str, str]) -> str:
    text = seen.get(value)
    if text is None:
        text = seen[value] = _form_value(value)
    return text


def _cells(fields: Mapping[str, str] | None) -> dict[str, str]:
    """A row's `fields` by the column each fills (first value wins on a clash)."""
    cells: dict[str, str] = {}
    for key, value in (fields or {}).items():
        column = _column(key)
        if column is not None and value and column not in cells:
            cells[column] = value
    return cells


class UnisenderClient(UpstreamClient):
    """One API key's Unisender account."""

    api = API
    # Unisender gives a call 30 s once the request is sent; wait as long before retrying.
    default_timeout = 30.0
    rate_limit_codes = RATE_LIMIT_CODES

    def __init__(
        self, base_url: str, api_key: str, limiter: AsyncLimiter, **options: Unpack[ClientOptions]
    ) -> None:
        super().__init__(base_url, limiter, **options)
        self._api_key = api_key
        # The user fields Unisender has, by lower-case name (None: not read yet). Read once
        # per client and kept up to date by `ensure_fields`, so an import needing a field
        # costs a getFields the first time and nothing after.
        self._fields: dict[str, str] | None = None
        self._fields_lock = asyncio.Lock()

    async def get_lists(self) -> list[MailList]:
        result = await self._call("getLists", encode_form([("api_key", self._api_key)]))
        return _validate(lambda: _LISTS.validate_python(result or []), "getLists", result)

    async def create_list(self, title: str) -> int:
        """Create a list; returns its id."""
        result = await self._call(
            "createList", encode_form([("api_key", self._api_key), ("title", title)])
        )
        return _created_id("createList", "list", result)

    async def get_fields(self) -> list[UnisenderField]:
        """The account's user fields."""
        return await self._list("getFields", _FIELDS)

    async def create_field(self, name: str, type: str = "string") -> int:  # noqa: A002
        """Create a user field (type string, text, number, date or bool); returns its id."""
        body = encode_form([("api_key", self._api_key), ("name", name), ("type", type)])
        result = await self._call("createField", body)
        return _created_id("createField", "field", result)

    async def ensure_fields(self, names: Iterable[str]) -> None:
        """Create, as `string` fields, those of `names` Unisender does not have yet.

        Unisender's own columns (phone, tags, ...) and `Name` are never created. Names are
        compared without case, as Unisender keeps them unique. A createField refused
        because the field exists (made meanwhile, by us or by hand) counts as created.
        """
        wanted = [name for name in dict.fromkeys(names) if name.lower() not in SYSTEM_COLUMNS]
        if self._fields is not None and all(name.lower() in self._fields for name in wanted):
            return
        async with self._fields_lock:
            known = self._fields
            if known is None:
                known = {field.name.lower(): field.name for field in await self.get_fields()}
                self._fields = known
            for name in wanted:
                if name.lower() in known:
                    continue
                try:
                    await self.create_field(name)
                except PermanentUpstreamError as exc:
                    if isinstance(exc, InvalidApiKey):
                        raise
                    if not await self._exists(name, exc):
                        raise FieldNotCreated(name, exc) from exc
                log.info("unisender.field.created", field=name)
                known[name.lower()] = name

    async def _exists(self, name: str, refusal: PermanentUpstreamError) -> bool:
        """Whether a createField refusal means the field is there after all: its message
        says so, or getFields now lists it (the wording is not documented)."""
        if any(marker in refusal.message.lower() for marker in _EXISTS):
            return True
        fields = {field.name.lower(): field.name for field in await self.get_fields()}
        if self._fields is not None:
            self._fields.update(fields)
        return name.lower() in fields

    async def import_contacts(self, rows: Sequence[ImportRow], *, list_id: int) -> ImportResult:
        """Add or update up to 500 addresses in `list_id` (or each row's `list_ids`), with
        the columns the rows carry; rejected rows come back in `log`.

        The user fields those columns name are created first when Unisender lacks them.
        """
        if len(rows) > MAX_IMPORT_ROWS:
            raise ValueError(
                f"importContacts takes at most {MAX_IMPORT_ROWS} rows, got {len(rows)}"
            )
        if not rows:
            return ImportResult()
        named = user_fields(import_columns(rows)) if any(row.fields for row in rows) else []
        if named:
            await self.ensure_fields(named)
        try:
            answer = await self._call(
                "importContacts", encode_import(self._api_key, rows, list_id), whole=True
            )
        except PermanentUpstreamError:
            if named:
                # Perhaps a field was deleted in Unisender since we read them: read them
                # again before the next import rather than trust what we knew.
                self._fields = None
            raise
        result = answer.get("result")
        warnings = _warnings(answer.get("warnings"))
        imported = _validate(lambda: ImportResult.model_validate(result), "importContacts", result)
        return imported.model_copy(update={"warnings": warnings}) if warnings else imported

    async def exclude(self, email: str, list_ids: Sequence[int]) -> None:
        """Take `email` out of `list_ids`, without deleting or unsubscribing it.

        An address that is not in those lists is already where we want it: not an error.
        """
        if not list_ids:
            # Without list_ids Unisender excludes the address from *every* list.
            raise ValueError("exclude needs at least one list id")
        body = encode_form(
            [
                ("api_key", self._api_key),
                ("contact_type", "email"),
                ("contact", email),
                ("list_ids", ",".join(str(list_id) for list_id in list_ids)),
            ]
        )
        try:
            await self._call("exclude", body)
        except PermanentUpstreamError as exc:
            if not _is_not_found(exc):
                raise
            log.debug("unisender.exclude.absent")

    async def get_contact(self, email: str) -> UnisenderContact | None:
        """The address's status and lists; None when Unisender does not know it."""
        body = encode_form(
            [
                ("api_key", self._api_key),
                ("email", email),
                ("include_lists", "1"),
                ("include_fields", "1"),
            ]
        )
        try:
            result = await self._call("getContact", body)
        except PermanentUpstreamError as exc:
            if _is_not_found(exc):
                return None
            raise
        if not isinstance(result, dict) or not isinstance(result.get("email"), dict):
            return None
        info = result["email"]
        fields = result.get("fields")
        return _validate(
            lambda: UnisenderContact.model_validate(
                {
                    "email": info.get("email") or email,
                    "status": info.get("status"),
                    "availability": info.get("availability"),
                    "added_at": info.get("added_at"),
                    "lists": result.get("lists") or [],
                    # PHP encodes an empty map as [], so only a dict counts.
                    "fields": fields if isinstance(fields, dict) else {},
                }
            ),
            "getContact",
            result,
        )

    async def set_hook(self, hook_url: str, events: Sequence[str]) -> None:
        """Install (or replace: the URL identifies it) an active `json_post` handler that
        gets each of `events`, of any list, one event per request."""
        pairs = [
            ("api_key", self._api_key),
            ("hook_url", hook_url),
            ("event_format", "json_post"),
            *((f"events[{event}]", "*") for event in events),
            ("single_event", "1"),
            ("status", "active"),
        ]
        await self._call("setHook", encode_form(pairs))

    async def list_hooks(self) -> list[UnisenderHook]:
        return await self._list("listHooks", _HOOKS)

    async def remove_hook(self, hook_url: str) -> None:
        """Remove the handler at `hook_url`; one that is already gone is not an error."""
        body = encode_form([("api_key", self._api_key), ("hook_url", hook_url)])
        try:
            await self._call("removeHook", body)
        except PermanentUpstreamError as exc:
            if isinstance(exc, InvalidApiKey):
                raise
            log.info("unisender.hook.absent", error=exc.message)

    async def _list(self, method: str, items: TypeAdapter[list[M]]) -> list[M]:
        """A method's list of objects (`getFields`, `listHooks`), anything else in it skipped."""
        result = await self._call(method, encode_form([("api_key", self._api_key)]))
        if isinstance(result, dict):  # PHP writes a keyed array as an object
            result = list(result.values())
        return _validate(
            lambda: items.validate_python(
                [item for item in result or [] if isinstance(item, dict)]
            ),
            method,
            result,
        )

    async def _call(self, method: str, body: bytes, *, whole: bool = False) -> Any:
        """POST one method and return its `result` (`whole`: the answer, `warnings` and
        all), retrying transient failures."""

        async def attempt() -> Any:
            request = self._http.build_request(
                "POST",
                f"{self.base_url}/{method}",
                params={"format": "json"},
                content=body,
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Accept": "application/json",
                },
                timeout=self._timeout,
            )
            answer = await self._send(request, method, lambda response: _answer(method, response))
            return answer if whole else answer.get("result")

        return await self._retried(attempt)


def _answer(method: str, response: httpx.Response) -> dict[str, Any]:
    """A successful answer (`result`, maybe `warnings`), or the error it stands for."""
    status = response.status_code
    if status == 429 or status >= 500:
        raise transient_answer(f"{method}: HTTP {status}", API, response)
    body = body_excerpt(response.text)
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        data = None
    if status >= 400 or not isinstance(data, dict):
        raise PermanentUpstreamError(
            f"{method}: unexpected answer (HTTP {status})", api=API, status=status, body=body
        )
    if data.get("error"):
        code = str(data.get("code") or "unspecified")
        message = f"{method}: {html.unescape(str(data['error']))}"
        error_class: type[UpstreamError]
        if code in KEY_CODES:
            error_class = InvalidApiKey
        elif code in TRANSIENT_CODES:
            error_class = TransientUpstreamError
        else:
            error_class = PermanentUpstreamError
        raise error_class(message, api=API, status=status, code=code, body=body)
    return data


def _warnings(value: Any) -> list[str]:
    """An answer's `warnings`: `[{"warning": text}]` in Unisender's description of its
    answers; a bare string or another key is kept too rather than lost."""
    if not isinstance(value, list):
        return []
    texts = []
    for item in value:
        if isinstance(item, dict):
            text = item.get("warning") or next((v for v in item.values() if v), "")
        else:
            text = item
        if text:
            texts.append(html.unescape(str(text)))
    return texts


def _is_not_found(exc: PermanentUpstreamError) -> bool:
    if isinstance(exc, InvalidApiKey):
        return False
    message = exc.message.lower()
    return any(marker in message for marker in _NOT_FOUND)


def _validate(build: Callable[[], T], method: str, result: Any) -> T:
    """Build a model from a `result`; one we cannot read is Unisender's bug, not retried."""
    try:
        return build()
    except ValidationError as exc:
        raise PermanentUpstreamError(
            f"{method}: unexpected result: {exc.errors()[0]['msg']}",
            api=API,
            body=_excerpt(result),
        ) from exc


def _created_id(method: str, what: str, result: Any) -> int:
    """The id of the list or field `method` created; an answer without one is a bug."""
    if not isinstance(result, dict) or "id" not in result:
        raise PermanentUpstreamError(
            f"{method}: no {what} id in the answer", api=API, body=_excerpt(result)
        )
    return int(result["id"])


def _excerpt(result: Any) -> str:
    return body_excerpt(orjson.dumps(result, default=str).decode())
