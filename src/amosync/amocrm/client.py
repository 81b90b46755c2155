"""amoCRM (Kommo) API v4: OAuth tokens and the few API calls amosync makes.

Every API request waits for the account's rate limiter, carries the current access token,
and is classified into the `amosync.errors` tree (token requests wait for the same limiter
when given it: amoCRM counts them among the account's 7 per second):

    2xx                      the result (204 on a list: no more pages)
    401                      one `tokens.refresh(stale)` and one more try, then AuthorizationRevoked
    429, 5xx, timeouts       TransientUpstreamError, retried in place by `amosync.upstream.retry`
    403 soon after a 429     AmoCRMBlocked (see "amoCRM's block" below), not retried in place
    other 4xx                PermanentUpstreamError

On the OAuth endpoint a refused code or refresh token (401, `invalid_grant`, "Token has been
revoked") is `AuthorizationRevoked`: the account must be installed again. Errors carry the
HTTP status and an excerpt of the body, never a token.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, NotRequired, Protocol, TypeVar
from weakref import WeakKeyDictionary

import httpx
import orjson
import structlog
from pydantic import ValidationError
from typing_extensions import TypedDict, Unpack

from amosync.amocrm.models import (
    Account,
    Contact,
    ContactsPage,
    ContactsResponse,
    CustomField,
    CustomFieldsResponse,
    HalList,
    Lead,
    LeadsPage,
    LeadsResponse,
    Note,
    NotesResponse,
    Pipeline,
    PipelinesResponse,
    Tag,
    TagsResponse,
    TokenPair,
    UntaggedContactsResponse,
    Webhook,
    WebhooksResponse,
)
from amosync.errors import (
    AmoCRMBlocked,
    AuthorizationRevoked,
    PermanentUpstreamError,
    UpstreamError,
)
from amosync.http.hosts import InvalidHost, host_name
from amosync.upstream.client import (
    ClientOptions,
    UpstreamClient,
    transient_answer,
    transport_errors,
)
from amosync.upstream.ratelimit import Limiter, paced
from amosync.upstream.redact import body_excerpt
from amosync.upstream.retry import DEFAULT_POLICY, RetryPolicy, with_retries

log = structlog.get_logger()
T = TypeVar("T")
L = TypeVar("L", bound=HalList)

API = "amocrm"
MAX_PAGE_SIZE = 250
OAUTH_PATH = "/oauth2/access_token"
# Hints amoCRM puts in a 400 answer when the code or refresh token itself is no good.
_REFUSED_GRANT = re.compile(r"revoked|expired|invalid|decrypt", re.IGNORECASE)


class TokenSource(Protocol):
    """Where an `AmoCRMClient` gets its access token (see `amosync.accounts.tokens`)."""

    async def access_token(self) -> str:
        """The current valid token (may refresh ahead of expiry)."""
        ...

    async def refresh(self, stale: str) -> str:
        """A new token, after amoCRM refused `stale` with a 401."""
        ...


def account_base_url(settings_base_url: str | None, referer_or_subdomain: str) -> str:
    """Where an account's API lives: `AMOSYNC_AMOCRM_BASE_URL` if set, else its domain.

    Accepts `acme.amocrm.ru`, `https://acme.kommo.com/...` or a bare subdomain `acme`
    (taken as `acme.amocrm.ru`). Raises `ValueError` for anything that is not a host name.
    """
    if settings_base_url:
        return settings_base_url.rstrip("/")
    try:
        # The same check as the install's referer (amosync.http.hosts), so the two never disagree.
        host = host_name(referer_or_subdomain)
    except InvalidHost as exc:
        raise ValueError(f"not an amoCRM account domain: {referer_or_subdomain!r}") from exc
    if "." not in host:
        host = f"{host}.amocrm.ru"
    return f"https://{host}"


class AmoCRMClient(UpstreamClient):
    """One account's amoCRM API."""

    api = API
    default_timeout = 15.0

    def __init__(
        self, base_url: str, tokens: TokenSource, limiter: Limiter, **options: Unpack[ClientOptions]
    ) -> None:
        super().__init__(base_url, limiter, **options)
        self._tokens = tokens

    async def get_account(self) -> Account:
        response = await self._request("GET", "/api/v4/account")
        return _parse(Account.model_validate_json, response)

    async def contacts_page(
        self,
        page: int,
        *,
        limit: int = MAX_PAGE_SIZE,
        updated_from: int | None = None,
        tags: bool = True,
    ) -> ContactsPage | None:
        """One page of contacts, oldest id first; None when there are no more (204).
        `tags=False`: read without `_embedded`, so every contact's `tags` is empty."""
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be 1..{MAX_PAGE_SIZE}, got {limit}")
        # Ordered by id so that a contact edited mid-sync does not move between pages.
        params: dict[str, str | int] = {"page": page, "limit": limit, "order[id]": "asc"}
        if updated_from is not None:
            params["filter[updated_at][from]"] = updated_from
        parse: Callable[[bytes], ContactsResponse | UntaggedContactsResponse] = (
            ContactsResponse.model_validate_json
            if tags
            else UntaggedContactsResponse.model_validate_json
        )
        parsed = await self._get("/api/v4/contacts", parse, params=params)
        if parsed is None:
            return None
        contacts: list[Contact] = list(parsed.contacts)
        has_next = parsed.has_next and bool(contacts)
        return ContactsPage(page=page, contacts=contacts, has_next=has_next)

    async def get_contact(self, contact_id: int) -> Contact | None:
        """One contact by id; None when amoCRM has no such contact (it answers 204, or 404).

        For a restore webhook that did not carry the contact's fields (SPEC §5)."""
        try:
            return await self._get(f"/api/v4/contacts/{contact_id}", Contact.model_validate_json)
        except PermanentUpstreamError as exc:
            if exc.status == 404:
                return None
            raise

    def iter_contacts(
        self, *, start_page: int = 1, updated_from: int | None = None, tags: bool = True
    ) -> AsyncIterator[ContactsPage]:
        """Pages from `start_page` until amoCRM answers 204 or gives no `_links.next`."""
        return _pages(
            lambda page: self.contacts_page(page, updated_from=updated_from, tags=tags),
            start=start_page,
        )

    async def contact_fields(self) -> list[CustomField]:
        """The account's contact fields, every page (amoCRM gives 50 a page unless asked)."""
        return await self._every_page(
            "/api/v4/contacts/custom_fields",
            CustomFieldsResponse.model_validate_json,
            lambda parsed: parsed.custom_fields,
        )

    async def pipelines(self) -> list[Pipeline]:
        """The account's lead pipelines with their statuses (one answer: amoCRM does not page
        them, an account has at most 50)."""
        parsed = await self._get("/api/v4/leads/pipelines", PipelinesResponse.model_validate_json)
        return [] if parsed is None else list(parsed.pipelines)

    async def contact_tags(self) -> list[Tag]:
        """The account's contact tags, every page."""
        return await self._every_page(
            "/api/v4/contacts/tags", TagsResponse.model_validate_json, lambda parsed: parsed.tags
        )

    async def contact_notes(
        self, contact_ids: Sequence[int], *, note_type: str, updated_since: int
    ) -> list[Note]:
        """The contacts' notes of `note_type` changed at or after `updated_since` (unix), every
        page (`GET /api/v4/contacts/notes` with `filter[entity_id]`, `filter[note_type]` and
        `filter[updated_at][from]`, as amoCRM's "Events and notes" page lists them)."""
        found: list[Note] = []
        # 100 ids a request keep the URL short of what proxies refuse (8 KB).
        for start in range(0, len(contact_ids), 100):
            filters: dict[str, str | int] = {
                f"filter[entity_id][{n}]": contact_id
                for n, contact_id in enumerate(contact_ids[start : start + 100])
            }
            filters["filter[note_type]"] = note_type
            filters["filter[updated_at][from]"] = updated_since
            found += await self._every_page(
                "/api/v4/contacts/notes",
                NotesResponse.model_validate_json,
                lambda parsed: parsed.notes,
                filters=filters,
            )
        return found

    async def _every_page(
        self,
        path: str,
        parse: Callable[[bytes], L],
        items: Callable[[L], list[T]],
        *,
        filters: dict[str, str | int] | None = None,
    ) -> list[T]:
        """Pages 1, 2... of a HAL list until a 204, an empty page or no `_links.next`."""

        async def read(page: int) -> _Batch[T] | None:
            params: dict[str, str | int] = {**(filters or {}), "page": page, "limit": MAX_PAGE_SIZE}
            parsed = await self._get(path, parse, params=params)
            if parsed is None:
                return None
            batch = items(parsed)
            return _Batch(batch, has_next=parsed.has_next and bool(batch))

        return [item async for batch in _pages(read) for item in batch.items]

    async def leads_page(
        self, statuses: Sequence[tuple[int, int]], *, page: int = 1, limit: int = MAX_PAGE_SIZE
    ) -> LeadsPage | None:
        """One page of the deals in these (pipeline id, status id) pairs, with their contacts;
        None when there are no more (204)."""
        if not statuses:
            raise ValueError("leads_page needs at least one (pipeline_id, status_id)")
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be 1..{MAX_PAGE_SIZE}, got {limit}")
        params: dict[str, str | int] = {"page": page, "limit": limit, "with": "contacts"}
        for index, (pipeline_id, status_id) in enumerate(statuses):
            params[f"filter[statuses][{index}][pipeline_id]"] = pipeline_id
            params[f"filter[statuses][{index}][status_id]"] = status_id
        parsed = await self._get("/api/v4/leads", LeadsResponse.model_validate_json, params=params)
        if parsed is None:
            return None
        leads = list(parsed.leads)
        return LeadsPage(page=page, leads=leads, has_next=parsed.has_next and bool(leads))

    async def iter_leads(self, statuses: Sequence[tuple[int, int]]) -> AsyncIterator[list[Lead]]:
        """The deals in these statuses, a page at a time, until a 204 or no `_links.next`."""
        async for result in _pages(lambda page: self.leads_page(statuses, page=page)):
            yield result.leads

    async def get_lead(self, lead_id: int) -> Lead | None:
        """One deal with its contacts; None when amoCRM has no such deal (204, or 404), as
        for a deleted one."""
        try:
            return await self._get(
                f"/api/v4/leads/{lead_id}", Lead.model_validate_json, params={"with": "contacts"}
            )
        except PermanentUpstreamError as exc:
            if exc.status == 404 and not isinstance(exc, AuthorizationRevoked):
                return None
            raise

    async def add_webhook(self, destination: str, events: list[str]) -> None:
        """Subscribe `destination` to `events` (amoCRM updates an existing destination)."""
        await self._request(
            "POST", "/api/v4/webhooks", json={"destination": destination, "settings": events}
        )

    async def webhooks(self) -> list[Webhook]:
        """The account's webhooks, `disabled` ones included (204 or no body: none)."""
        parsed = await self._get("/api/v4/webhooks", WebhooksResponse.model_validate_json)
        return [] if parsed is None else list(parsed.webhooks)

    async def delete_webhook(self, destination: str) -> None:
        """Unsubscribe `destination`; a webhook that is already gone is not an error."""
        try:
            await self._request("DELETE", "/api/v4/webhooks", json={"destination": destination})
        except PermanentUpstreamError as exc:
            if exc.status != 404 or isinstance(exc, AuthorizationRevoked):
                raise
            log.info("amocrm.webhook.absent")

    async def add_tags(self, contact_ids: Sequence[int], tag: str) -> None:
        """Add the tag `tag` to each contact, its other tags untouched (`tags_to_add`)."""
        for start in range(0, len(contact_ids), MAX_PAGE_SIZE):
            body = [
                {"id": contact_id, "tags_to_add": [{"name": tag}]}
                for contact_id in contact_ids[start : start + MAX_PAGE_SIZE]
            ]
            await self._request("PATCH", "/api/v4/contacts", json=body)

    async def add_notes(self, notes: Sequence[tuple[int, str]], *, retry: bool = True) -> None:
        """A `common` note with text on each (contact id, text).

        `retry=False`: one attempt, no retry in place. A POST whose answer was lost (a
        timeout, a 5xx from a proxy) may have created its notes, and amoCRM has no key to
        make a second one harmless: a caller that must not note twice looks first
        (`contact_notes`) and posts what is missing.
        """
        policy = self._policy if retry else replace(self._policy, attempts=1)
        for start in range(0, len(notes), MAX_PAGE_SIZE):
            body = [
                {"entity_id": contact_id, "note_type": "common", "params": {"text": text}}
                for contact_id, text in notes[start : start + MAX_PAGE_SIZE]
            ]
            await self._request("POST", "/api/v4/contacts/notes", json=body, policy=policy)

    async def _get(
        self,
        path: str,
        parse: Callable[[bytes], T],
        *,
        params: dict[str, str | int] | None = None,
    ) -> T | None:
        """GET `path` and parse the answer; None when amoCRM answers with nothing (a 204:
        no such item, or a page past the last)."""
        response = await self._request("GET", path, params=params)
        if response.status_code == 204 or not response.content:
            return None
        return _parse(parse, response)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str | int] | None = None,
        json: dict[str, Any] | list[Any] | None = None,
        policy: RetryPolicy | None = None,
    ) -> httpx.Response:
        refreshed = False

        async def attempt() -> httpx.Response:
            nonlocal refreshed
            token = await self._tokens.access_token()
            response = await self._send_api(method, path, token, params=params, json=json)
            if response.status_code == 401 and not refreshed:
                # Tokens can die before their expiry (revoked, rotated by another process):
                # refresh once and try again; a second 401 means we are really locked out.
                refreshed = True
                log.info("amocrm.token.rejected", path=path)
                token = await self._tokens.refresh(token)
                response = await self._send_api(method, path, token, params=params, json=json)
            self._check(method, path, response)
            return response

        return await self._retried(attempt, policy)

    async def _send_api(
        self,
        method: str,
        path: str,
        token: str,
        *,
        params: dict[str, str | int] | None,
        json: dict[str, Any] | list[Any] | None,
    ) -> httpx.Response:
        request = self._http.build_request(
            method,
            self.base_url + path,
            params=params,
            json=json,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=self._timeout,
        )
        # The answer is checked by the caller, after a 401 has had its one refresh.
        return await self._send(request, f"{method} {path}", lambda response: response)

    def _check(self, method: str, path: str, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        _check_block(self._limiter, method, path, response)
        error = _status_error(f"{method} {path}", response)
        if status == 401:
            raise AuthorizationRevoked(
                f"{method} {path}: amoCRM refused a freshly refreshed token",
                api=API,
                status=status,
                body=error.body,
            )
        raise error


class _Paged(Protocol):
    @property
    def has_next(self) -> bool: ...


Paged = TypeVar("Paged", bound=_Paged)


@dataclass(frozen=True)
class _Batch(Generic[T]):
    """One page of a list read whole (`_every_page`)."""

    items: list[T]
    has_next: bool


async def _pages(
    read: Callable[[int], Awaitable[Paged | None]], *, start: int = 1
) -> AsyncIterator[Paged]:
    """Pages `start`, `start + 1`... as `read(page)` gives them, until it gives None (amoCRM
    answered 204) or a page with no next one."""
    page = start
    while (result := await read(page)) is not None:
        yield result
        if not result.has_next:
            return
        page += 1


# --- amoCRM's block ---------------------------------------------------------------------
# amoCRM allows 7 requests a second and restricts an integration that keeps exceeding it
# (developers.kommo.com/docs/limitations, "Requests and IP block"): a 403 then, where a 429
# came before. A 403 on its own means something else (code 113: the account's IP allow-list,
# or missing rights) and stays a refused request. What came before is remembered per
# account limiter, so the 429s of one job and the 403 of the next, in one process, still
# read as a block; across processes a lone 403 is a refused request.
BLOCK_MEMORY = 15 * 60.0
_rate_limited_at: WeakKeyDictionary[Limiter, float] = WeakKeyDictionary()


def _check_block(limiter: Limiter, method: str, path: str, response: httpx.Response) -> None:
    status = response.status_code
    if status == 429:
        _rate_limited_at[limiter] = time.monotonic()
    elif status == 403:
        seen = _rate_limited_at.get(limiter)
        if seen is not None and time.monotonic() - seen < BLOCK_MEMORY:
            # A block answered again keeps the memory fresh: it is still the same block.
            _rate_limited_at[limiter] = time.monotonic()
            raise AmoCRMBlocked(
                f"{method} {path}: 403 after rate-limit errors",
                api=API,
                status=status,
                body=body_excerpt(response.text),
            )


class TokenRequest(TypedDict):
    """What every token request names besides its grant: the integration, and how to call."""

    client_id: str
    client_secret: str
    redirect_uri: str
    timeout: NotRequired[float]  # 15 s
    retry_policy: NotRequired[RetryPolicy]
    # The account's limiter, when it is known: amoCRM counts token requests among its calls.
    limiter: NotRequired[Limiter | None]


async def exchange_code(
    http: httpx.AsyncClient, base_url: str, *, code: str, **request: Unpack[TokenRequest]
) -> TokenPair:
    """Trade an authorization code (single-use, 20 minutes) for a token pair."""
    grant = {"grant_type": "authorization_code", "code": code}
    return await _token_request(http, base_url, grant, **request)


async def refresh_tokens(
    http: httpx.AsyncClient, base_url: str, *, refresh_token: str, **request: Unpack[TokenRequest]
) -> TokenPair:
    """Trade a refresh token (single-use) for a new pair; the old one is dead afterwards."""
    grant = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return await _token_request(http, base_url, grant, **request)


async def _token_request(
    http: httpx.AsyncClient,
    base_url: str,
    grant_fields: dict[str, str],
    *,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    timeout: float = 15.0,
    retry_policy: RetryPolicy = DEFAULT_POLICY,
    limiter: Limiter | None = None,
) -> TokenPair:
    body = {
        "client_id": client_id,
        "client_secret": client_secret,
        **grant_fields,
        "redirect_uri": redirect_uri,
    }
    grant = grant_fields["grant_type"]
    url = base_url.rstrip("/") + OAUTH_PATH

    # Retrying is safe for 429/5xx/connect errors, which come before amoCRM spends the
    # grant. After a read timeout we cannot know: a retry may find the grant spent and end
    # as AuthorizationRevoked, which is what a later retry by the worker would find too.
    async def attempt() -> TokenPair:
        with transport_errors(f"token request ({grant})", API):
            async with paced(limiter, OAUTH_PATH) if limiter else contextlib.nullcontext():
                response = await http.post(
                    url, json=body, headers={"Accept": "application/json"}, timeout=timeout
                )
        if response.status_code >= 400:
            raise _oauth_error(grant, response)
        return _parse(TokenPair.model_validate_json, response)

    pair = await with_retries(attempt, policy=retry_policy)
    log.debug("amocrm.token.issued", grant=grant, expires_in=pair.expires_in)
    return pair


def _oauth_error(grant: str, response: httpx.Response) -> UpstreamError:
    status = response.status_code
    what = f"token request ({grant})"
    if status == 429 or status >= 500:
        return _status_error(what, response)
    details = _json_object(response.content)
    hint = " ".join(str(details.get(key) or "") for key in ("hint", "detail", "error_description"))
    refused = (
        status == 401
        or details.get("error") == "invalid_grant"
        or (status == 400 and bool(_REFUSED_GRANT.search(hint)))
    )
    message = details.get("hint") or details.get("title") or details.get("error") or "refused"
    error_class = AuthorizationRevoked if refused else PermanentUpstreamError
    return error_class(
        f"{what}: {message}",
        api=API,
        status=status,
        code=str(details["error"]) if details.get("error") else None,
        body=body_excerpt(response.text),
    )


def _status_error(what: str, response: httpx.Response) -> UpstreamError:
    """The error for a non-2xx API answer other than the 401 handled by the caller."""
    status = response.status_code
    if status == 429:
        return transient_answer(f"{what}: rate limited", API, response)
    if status >= 500:
        return transient_answer(f"{what}: server error", API, response)
    details = _json_object(response.content)
    message = details.get("detail") or details.get("title") or response.reason_phrase
    return PermanentUpstreamError(
        f"{what}: {message}", api=API, status=status, body=body_excerpt(response.text)
    )


def _json_object(content: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _parse(parse: Callable[[bytes], T], response: httpx.Response) -> T:
    """Parse a 2xx body; a body we cannot read is amoCRM's bug, not worth retrying."""
    try:
        return parse(response.content)
    except ValidationError as exc:
        raise PermanentUpstreamError(
            f"unexpected response from {response.request.url.path}: "
            f"{exc.error_count()} problem(s), first: {exc.errors()[0]['msg']}",
            api=API,
            status=response.status_code,
            body=body_excerpt(response.text),
        ) from exc
