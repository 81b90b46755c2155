"""Unisender API: lists, importContacts, exclude, getContact, and the hooks (setHook,
listHooks, removeHook) that tell us of unsubscribes.

Every call is `POST {base}/{method}?format=json` with a form body. The API key travels in the
body, never in the URL, so it cannot end up in an access log or a proxy's. Array arguments use
indexed keys (`field_names[0]`, `data[0][0]`), the PHP convention Unisender expects.

Unisender answers errors with HTTP 200 and `{"error": message, "code": code}`:

    invalid_api_key, access_denied                   InvalidApiKey (stop the account's sync)
    retry_later, api_call_limit_exceeded_for_*       TransientUpstreamError, retried in place
    anything else (invalid_arg, unspecified, ...)     PermanentUpstreamError with the code

HTTP 429, 5xx and timeouts are transient as well; `amosync.retry` retries transient errors a
few times, then they reach the worker, which reschedules the job.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Self, TypeVar
from urllib.parse import quote_plus

import httpx
import orjson
import structlog
from aiolimiter import AsyncLimiter
from pydantic import TypeAdapter, ValidationError

from amosync.errors import (
    InvalidApiKey,
    PermanentUpstreamError,
    TransientUpstreamError,
    UpstreamError,
)
from amosync.retry import (
    DEFAULT_POLICY,
    CallObserver,
    RetryPolicy,
    body_excerpt,
    parse_retry_after,
    with_retries,
)
from amosync.unisender.models import (
    ImportResult,
    ImportRow,
    MailList,
    UnisenderContact,
    UnisenderHook,
)

log = structlog.get_logger()
T = TypeVar("T")

API = "unisender"
MAX_IMPORT_ROWS = 500
KEY_CODES = frozenset({"invalid_api_key", "access_denied"})
RATE_LIMIT_CODES = frozenset(
    {"api_call_limit_exceeded_for_api_key", "api_call_limit_exceeded_for_ip"}
)
TRANSIENT_CODES = RATE_LIMIT_CODES | {"retry_later"}
# Unisender reports an unknown address as an `unspecified` error, in the API's language.
_NOT_FOUND = ("not found", "не найден")

_LISTS = TypeAdapter(list[MailList])
_HOOKS = TypeAdapter(list[UnisenderHook])


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


def encode_import(api_key: str, rows: Sequence[ImportRow], list_id: int) -> bytes:
    """The `importContacts` body: columns email, Name, email_list_ids.

    Written by hand because it is the hot path of a full sync (one call per 500 addresses);
    `email_status` is deliberately absent, so an address that unsubscribed stays so.
    """
    list_value = quote_plus(str(list_id))
    parts = [f"api_key={quote_plus(api_key)}", _IMPORT_FIELDS]
    for index, row in enumerate(rows):
        prefix = f"data%5B{index}%5D%5B"
        parts.append(
            f"{prefix}0%5D={_form_value(row.email)}"
            f"&{prefix}1%5D={_form_value(row.name)}"
            f"&{prefix}2%5D={list_value}"
        )
    return "&".join(parts).encode()


class UnisenderClient:
    """One API key's Unisender account."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        limiter: AsyncLimiter,
        http: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        *,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
        observer: CallObserver | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._limiter = limiter
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient()
        # Unisender gives a call 30 s once the request is sent; wait as long before retrying.
        self._timeout = httpx.Timeout(timeout)
        self._policy = retry_policy
        self._observer = observer

    def __repr__(self) -> str:
        return f"UnisenderClient({self.base_url!r})"  # never the key

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this client created it."""
        if self._owns_http:
            await self._http.aclose()

    async def get_lists(self) -> list[MailList]:
        result = await self._call("getLists", encode_form([("api_key", self._api_key)]))
        return _validate(lambda: _LISTS.validate_python(result or []), "getLists", result)

    async def create_list(self, title: str) -> int:
        """Create a list; returns its id."""
        result = await self._call(
            "createList", encode_form([("api_key", self._api_key), ("title", title)])
        )
        if not isinstance(result, dict) or "id" not in result:
            raise PermanentUpstreamError(
                "createList: no list id in the answer",
                api=API,
                body=body_excerpt(orjson.dumps(result, default=str).decode()),
            )
        return int(result["id"])

    async def import_contacts(self, rows: Sequence[ImportRow], *, list_id: int) -> ImportResult:
        """Add or update up to 500 addresses in `list_id`; rejected rows come back in `log`."""
        if len(rows) > MAX_IMPORT_ROWS:
            raise ValueError(
                f"importContacts takes at most {MAX_IMPORT_ROWS} rows, got {len(rows)}"
            )
        if not rows:
            return ImportResult()
        answer = await self._call(
            "importContacts", encode_import(self._api_key, rows, list_id), whole=True
        )
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
        result = await self._call("listHooks", encode_form([("api_key", self._api_key)]))
        if isinstance(result, dict):  # PHP writes a keyed array as an object
            result = list(result.values())
        return _validate(
            lambda: _HOOKS.validate_python(
                [item for item in result or [] if isinstance(item, dict)]
            ),
            "listHooks",
            result,
        )

    async def remove_hook(self, hook_url: str) -> None:
        """Remove the handler at `hook_url`; one that is already gone is not an error."""
        body = encode_form([("api_key", self._api_key), ("hook_url", hook_url)])
        try:
            await self._call("removeHook", body)
        except PermanentUpstreamError as exc:
            if isinstance(exc, InvalidApiKey):
                raise
            log.info("unisender.hook.absent", error=exc.message)

    async def _call(self, method: str, body: bytes, *, whole: bool = False) -> Any:
        """POST one method and return its `result` (`whole`: the answer, `warnings` and
        all), retrying transient failures."""

        async def attempt() -> Any:
            await self._limiter.acquire()
            started = time.monotonic()
            try:
                response = await self._http.post(
                    f"{self.base_url}/{method}",
                    params={"format": "json"},
                    content=body,
                    headers={
                        "Content-Type": "application/x-www-form-urlencoded",
                        "Accept": "application/json",
                    },
                    timeout=self._timeout,
                )
            except httpx.TimeoutException as exc:
                self._observe("transient", started)
                raise TransientUpstreamError(f"{method} timed out", api=API) from exc
            except httpx.TransportError as exc:
                self._observe("transient", started)
                raise TransientUpstreamError(
                    f"{method} failed: {type(exc).__name__}: {exc}", api=API
                ) from exc
            try:
                answer = _answer(method, response)
            except UpstreamError as exc:
                self._observe(_outcome(exc), started)
                raise
            self._observe("ok", started)
            return answer if whole else answer.get("result")

        return await with_retries(attempt, policy=self._policy)

    def _observe(self, outcome: str, started: float) -> None:
        if self._observer is not None:
            self._observer(API, outcome, time.monotonic() - started)


def _answer(method: str, response: httpx.Response) -> dict[str, Any]:
    """A successful answer (`result`, maybe `warnings`), or the error it stands for."""
    status = response.status_code
    body = body_excerpt(response.text)
    if status == 429 or status >= 500:
        raise TransientUpstreamError(
            f"{method}: HTTP {status}",
            api=API,
            status=status,
            body=body,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
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


def _outcome(exc: UpstreamError) -> str:
    if exc.status == 429 or exc.code in RATE_LIMIT_CODES:
        return "rate_limited"
    return "transient" if isinstance(exc, TransientUpstreamError) else "permanent"


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
            body=body_excerpt(orjson.dumps(result, default=str).decode()),
        ) from exc
