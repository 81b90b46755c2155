"""The amoCRM client against scripted answers (httpx.MockTransport): paging, token refresh,
error classification, retries, rate limiting and the OAuth calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import stamina

from amosync.amocrm.client import (
    AmoCRMClient,
    account_base_url,
    exchange_code,
    refresh_tokens,
)
from amosync.errors import AuthorizationRevoked, PermanentUpstreamError, TransientUpstreamError
from amosync.upstream.ratelimit import RateLimits, make_limiter
from amosync.upstream.retry import RetryPolicy
from tests.transport import Script

BASE = "https://acme.amocrm.ru"
ATTEMPTS = 3


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    """Retries without waiting, ATTEMPTS attempts per call."""
    with stamina.set_testing(True, attempts=ATTEMPTS):
        yield


class Tokens:
    """A TokenSource that records refreshes."""

    def __init__(self, token: str = "token-1", fresh: str = "token-2") -> None:
        self.token = token
        self.fresh = fresh
        self.refreshed_with: list[str] = []

    async def access_token(self) -> str:
        return self.token

    async def refresh(self, stale: str) -> str:
        self.refreshed_with.append(stale)
        self.token = self.fresh
        return self.fresh


def client_for(
    script: Script,
    tokens: Tokens | None = None,
    *,
    rate: float = 1000,
    observer: Callable[[str, str, float], None] | None = None,
    policy: RetryPolicy | None = None,
) -> AmoCRMClient:
    http = script.client()
    extra: dict[str, Any] = {"observer": observer}
    if policy is not None:
        extra["retry_policy"] = policy
    return AmoCRMClient(BASE, tokens or Tokens(), make_limiter(rate), http=http, **extra)


def contact(contact_id: int, *emails: str) -> dict[str, Any]:
    return {
        "id": contact_id,
        "name": f"Contact {contact_id}",
        "first_name": "",
        "responsible_user_id": 504141,
        "updated_at": 1_700_000_000 + contact_id,
        "is_deleted": False,
        "custom_fields_values": [
            {
                "field_id": 3,
                "field_name": "Телефон",
                "field_code": "PHONE",
                "field_type": "multitext",
                "values": [{"value": "+79990000000", "enum_id": 1, "enum_code": "WORK"}],
            },
            {
                "field_id": 5,
                "field_name": "Email",
                "field_code": "EMAIL",
                "field_type": "multitext",
                "values": [{"value": e, "enum_id": 7, "enum_code": "WORK"} for e in emails],
            },
        ],
        "_links": {"self": {"href": f"{BASE}/api/v4/contacts/{contact_id}"}},
    }


def page(number: int, contacts: list[dict[str, Any]], *, has_next: bool) -> httpx.Response:
    links: dict[str, Any] = {"self": {"href": f"{BASE}/api/v4/contacts?page={number}"}}
    if has_next:
        links["next"] = {"href": f"{BASE}/api/v4/contacts?page={number + 1}"}
    body = {"_page": number, "_links": links, "_embedded": {"contacts": contacts}}
    return httpx.Response(200, content=orjson.dumps(body))


def problem(status: int, **fields: Any) -> httpx.Response:
    return httpx.Response(status, json={"status": status, **fields})


# --- paging -------------------------------------------------------------------------------


async def test_contacts_page_parses_contacts_and_custom_fields() -> None:
    script = Script(page(1, [contact(11, "ann@example.com", "a2@example.com")], has_next=True))
    async with client_for(script) as client:
        result = await client.contacts_page(1)

    assert result is not None
    assert result.page == 1
    assert result.has_next
    (found,) = result.contacts
    assert found.id == 11
    assert found.name == "Contact 11"
    assert found.updated_at == 1_700_000_011
    assert found.custom_fields_values is not None
    email = next(f for f in found.custom_fields_values if f.get("field_code") == "EMAIL")
    assert [v.get("value") for v in email["values"]] == ["ann@example.com", "a2@example.com"]
    assert email["values"][0].get("enum_code") == "WORK"
    request = script.requests[0]
    assert request.url.path == "/api/v4/contacts"
    assert request.url.params["page"] == "1"
    assert request.url.params["limit"] == "250"
    assert request.headers["authorization"] == "Bearer token-1"


async def test_contact_without_custom_fields() -> None:
    bare = {"id": 5, "name": "No fields", "custom_fields_values": None}
    async with client_for(Script(page(1, [bare], has_next=False))) as client:
        result = await client.contacts_page(1)
    assert result is not None
    assert result.contacts[0].custom_fields_values is None


async def test_contacts_page_reads_tags_unless_told_not_to() -> None:
    tagged = {
        **contact(7, "t@example.com"),
        "_embedded": {
            "tags": [{"id": 1, "name": " VIP ", "color": None}, {"id": 2, "name": "опт"}],
            "companies": [{"id": 30, "_links": {"self": {"href": f"{BASE}/api/v4/companies/30"}}}],
        },
    }
    script = Script(page(1, [tagged], has_next=False), page(1, [tagged], has_next=False))
    async with client_for(script) as client:
        with_tags = await client.contacts_page(1)
        without = await client.contacts_page(1, tags=False)

    assert with_tags is not None
    assert without is not None
    assert with_tags.contacts[0].tags == ["VIP", "опт"]
    # Nothing is built from `_embedded` for a sync that reads no tags.
    assert without.contacts[0].tags == []
    assert without.contacts[0].embedded is None
    assert without.contacts[0].custom_fields_values == with_tags.contacts[0].custom_fields_values


async def test_iter_contacts_follows_pages_until_204() -> None:
    script = Script(
        page(1, [contact(1, "a@example.com")], has_next=True),
        page(2, [contact(2, "b@example.com")], has_next=True),
        httpx.Response(204),
    )
    async with client_for(script) as client:
        pages = [p async for p in client.iter_contacts()]

    assert [p.page for p in pages] == [1, 2]
    assert [c.id for p in pages for c in p.contacts] == [1, 2]
    assert [r.url.params["page"] for r in script.requests] == ["1", "2", "3"]


async def test_iter_contacts_stops_without_next_link() -> None:
    script = Script(page(4, [contact(40)], has_next=False))
    async with client_for(script) as client:
        pages = [p async for p in client.iter_contacts(start_page=4, updated_from=1_700_000_000)]

    assert [p.page for p in pages] == [4]
    assert len(script.requests) == 1  # no extra call after the last page
    assert script.requests[0].url.params["filter[updated_at][from]"] == "1700000000"


async def test_contacts_page_rejects_limit_over_250() -> None:
    async with client_for(Script(httpx.Response(204))) as client:
        with pytest.raises(ValueError, match="limit"):
            await client.contacts_page(1, limit=251)


async def test_garbled_page_is_permanent_error() -> None:
    async with client_for(Script(httpx.Response(200, content=b"<html>oops"))) as client:
        with pytest.raises(PermanentUpstreamError) as caught:
            await client.contacts_page(1)
    assert caught.value.body == "<html>oops"


# --- tokens ---------------------------------------------------------------------------------


async def test_401_refreshes_once_and_retries_with_the_new_token() -> None:
    tokens = Tokens()
    script = Script(problem(401, title="Unauthorized"), page(1, [contact(1)], has_next=False))
    async with client_for(script, tokens) as client:
        result = await client.contacts_page(1)

    assert result is not None
    assert result.contacts[0].id == 1
    assert tokens.refreshed_with == ["token-1"]
    assert [r.headers["authorization"] for r in script.requests] == [
        "Bearer token-1",
        "Bearer token-2",
    ]


async def test_second_401_is_authorization_revoked_after_one_refresh() -> None:
    tokens = Tokens()
    script = Script(problem(401, title="Unauthorized", detail="Account is disabled"))
    async with client_for(script, tokens) as client:
        with pytest.raises(AuthorizationRevoked) as caught:
            await client.get_account()

    assert tokens.refreshed_with == ["token-1"]
    assert len(script.requests) == 2  # the call and its one retry, not ATTEMPTS of them
    assert caught.value.status == 401
    assert "token-1" not in str(caught.value)
    assert "token-2" not in (caught.value.body or "")


async def test_refresh_failure_propagates_unretried() -> None:
    class Revoked(Tokens):
        async def refresh(self, stale: str) -> str:  # noqa: ARG002
            raise AuthorizationRevoked("refresh token revoked", api="amocrm", status=401)

    script = Script(problem(401))
    async with client_for(script, Revoked()) as client:
        with pytest.raises(AuthorizationRevoked, match="revoked"):
            await client.get_account()
    assert len(script.requests) == 1


# --- errors and retries ---------------------------------------------------------------------


async def test_429_is_retried() -> None:
    script = Script(
        httpx.Response(429, headers={"Retry-After": "1"}), page(1, [contact(1)], has_next=False)
    )
    async with client_for(script) as client:
        result = await client.contacts_page(1)
    assert result is not None
    assert len(script.requests) == 2


async def test_persistent_5xx_becomes_transient_after_bounded_attempts() -> None:
    script = Script(problem(503, title="Service Unavailable"))
    async with client_for(script) as client:
        with pytest.raises(TransientUpstreamError) as caught:
            await client.get_account()

    assert len(script.requests) == ATTEMPTS
    assert caught.value.status == 503
    assert caught.value.api == "amocrm"
    assert "Service Unavailable" in (caught.value.body or "")


async def test_timeout_is_transient_and_retried() -> None:
    account = httpx.Response(200, json={"id": 30896271, "name": "Acme", "subdomain": "acme"})
    script = Script(httpx.ReadTimeout("slow"), account)
    async with client_for(script) as client:
        info = await client.get_account()
    assert (info.id, info.name, info.subdomain) == (30896271, "Acme", "acme")
    assert len(script.requests) == 2


async def test_other_4xx_is_permanent_and_not_retried() -> None:
    script = Script(problem(400, title="Bad Request", detail="limit is invalid"))
    async with client_for(script) as client:
        with pytest.raises(PermanentUpstreamError) as caught:
            await client.contacts_page(1)

    assert not isinstance(caught.value, AuthorizationRevoked)
    assert len(script.requests) == 1
    assert caught.value.status == 400
    assert "limit is invalid" in str(caught.value)


async def test_retry_after_is_honoured() -> None:
    script = Script(
        httpx.Response(429, headers={"Retry-After": "0.3"}), page(1, [], has_next=False)
    )
    policy = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.02, wait_jitter=0.01)
    with stamina.set_testing(False):
        async with client_for(script, policy=policy) as client:
            started = time.monotonic()
            await client.contacts_page(1)
            elapsed = time.monotonic() - started

    assert elapsed >= 0.3
    assert len(script.requests) == 2


async def test_long_retry_after_is_left_to_the_worker() -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "120"}))
    policy = RetryPolicy(max_retry_after=30)
    with stamina.set_testing(False):
        async with client_for(script, policy=policy) as client:
            started = time.monotonic()
            with pytest.raises(TransientUpstreamError) as caught:
                await client.contacts_page(1)

    assert time.monotonic() - started < 1
    assert len(script.requests) == 1
    assert caught.value.retry_after == 120
    assert caught.value.status == 429


async def test_observer_sees_every_attempt() -> None:
    seen: list[tuple[str, str]] = []
    script = Script(
        problem(401), httpx.Response(429), httpx.Response(500), page(1, [], has_next=False)
    )
    observer = lambda api, outcome, _seconds: seen.append((api, outcome))  # noqa: E731
    async with client_for(script, observer=observer) as client:
        await client.contacts_page(1)
    assert seen == [
        ("amocrm", "unauthorized"),
        ("amocrm", "rate_limited"),
        ("amocrm", "transient"),
        ("amocrm", "ok"),
    ]


# --- webhooks -------------------------------------------------------------------------------


async def test_add_and_delete_webhook() -> None:
    created = httpx.Response(200, json={"id": 1, "destination": "https://x/webhook?token=t"})
    script = Script(created, httpx.Response(204))
    destination = "https://amosync.example/webhook?token=t"
    async with client_for(script) as client:
        await client.add_webhook(destination, ["add_contact", "update_contact"])
        await client.delete_webhook(destination)

    add, delete = script.requests
    assert (add.method, add.url.path) == ("POST", "/api/v4/webhooks")
    assert orjson.loads(add.content) == {
        "destination": destination,
        "settings": ["add_contact", "update_contact"],
    }
    assert (delete.method, delete.url.path) == ("DELETE", "/api/v4/webhooks")
    assert orjson.loads(delete.content) == {"destination": destination}


async def test_deleting_an_absent_webhook_is_fine() -> None:
    async with client_for(Script(problem(404, title="Not found"))) as client:
        await client.delete_webhook("https://gone.example/webhook")


# --- rate limiting --------------------------------------------------------------------------


async def test_requests_go_through_the_limiter() -> None:
    script = Script(page(1, [], has_next=False))
    async with client_for(script, rate=10) as client:
        started = time.monotonic()
        for _ in range(5):
            await client.contacts_page(1)
        elapsed = time.monotonic() - started
    # 5 calls at 10/s: the 5th may start no earlier than 4 spacings (~0.1 s each) after the 1st
    assert elapsed >= 0.4


async def test_limiter_never_bursts_past_the_rate_in_any_second() -> None:
    rate = 20
    limiter = make_limiter(rate)
    starts: list[float] = []

    async def call() -> None:
        await limiter.acquire()
        starts.append(time.monotonic())

    await asyncio.gather(*(call() for _ in range(rate + 1)))

    starts.sort()
    assert starts[-1] - starts[0] >= 1.0  # the 21st call waits for the window to move
    for i, first in enumerate(starts):
        in_window = [t for t in starts[i:] if t < first + 1.0]
        assert len(in_window) <= rate


def test_rate_limits_share_one_limiter_per_key() -> None:
    limits = RateLimits()
    first = limits.get("amocrm:1", 7)
    assert limits.get("amocrm:1", 7) is first
    assert limits.get("amocrm:2", 7) is not first
    assert len(limits) == 2


# --- OAuth ----------------------------------------------------------------------------------

PAIR = {
    "token_type": "Bearer",
    "expires_in": 86400,
    "access_token": "new-access",
    "refresh_token": "new-refresh",
}


async def test_refresh_sends_the_fields_amocrm_requires() -> None:
    script = Script(httpx.Response(200, json=PAIR))
    async with script.client() as http:
        pair = await refresh_tokens(
            http,
            BASE,
            client_id="client-uuid",
            client_secret="secret",
            redirect_uri="https://amosync.example/vidget",
            refresh_token="old-refresh",
        )

    (request,) = script.requests
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/oauth2/access_token")
    assert orjson.loads(request.content) == {
        "client_id": "client-uuid",
        "client_secret": "secret",
        "grant_type": "refresh_token",
        "refresh_token": "old-refresh",
        "redirect_uri": "https://amosync.example/vidget",
    }
    assert (pair.access_token, pair.refresh_token, pair.expires_in) == (
        "new-access",
        "new-refresh",
        86400,
    )
    remaining = (pair.expires_at - datetime.now(UTC)).total_seconds()
    assert 86390 < remaining <= 86400
    assert "new-access" not in repr(pair)


async def test_exchange_code_sends_authorization_code_grant() -> None:
    script = Script(httpx.Response(200, json=PAIR))
    async with script.client() as http:
        await exchange_code(
            http,
            BASE,
            client_id="client-uuid",
            client_secret="secret",
            redirect_uri="https://amosync.example/vidget",
            code="def502",
        )
    body = orjson.loads(script.requests[0].content)
    assert body["grant_type"] == "authorization_code"
    assert body["code"] == "def502"


REVOKED = {
    "hint": "Token has been revoked",
    "title": "Некорректный запрос",
    "type": "https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
    "status": 401,
    "detail": "В запросе отсутствует ряд параметров или параметры невалидны",
}


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(401, json=REVOKED),
        httpx.Response(400, json={**REVOKED, "status": 400}),
        httpx.Response(400, json={"error": "invalid_grant"}),
        httpx.Response(400, json={"hint": "Authorization code has expired", "status": 400}),
    ],
    ids=["401-revoked", "400-revoked", "invalid_grant", "code-expired"],
)
async def test_refused_grant_is_authorization_revoked(answer: httpx.Response) -> None:
    script = Script(answer)
    async with script.client() as http:
        with pytest.raises(AuthorizationRevoked) as caught:
            await refresh_tokens(
                http,
                BASE,
                client_id="c",
                client_secret="the-client-secret",
                redirect_uri="https://amosync.example/vidget",
                refresh_token="the-refresh-token",
            )
    assert len(script.requests) == 1
    text = f"{caught.value} {caught.value.body}"
    assert "the-refresh-token" not in text
    assert "the-client-secret" not in text


async def test_other_oauth_4xx_is_permanent() -> None:
    script = Script(httpx.Response(403, json={"title": "Forbidden", "status": 403}))
    async with script.client() as http:
        with pytest.raises(PermanentUpstreamError) as caught:
            await exchange_code(
                http, BASE, client_id="c", client_secret="s", redirect_uri="r", code="x"
            )
    assert not isinstance(caught.value, AuthorizationRevoked)
    assert caught.value.status == 403


async def test_oauth_5xx_is_retried_then_transient() -> None:
    script = Script(httpx.Response(502, text="bad gateway"))
    async with script.client() as http:
        with pytest.raises(TransientUpstreamError):
            await exchange_code(
                http, BASE, client_id="c", client_secret="s", redirect_uri="r", code="x"
            )
    assert len(script.requests) == ATTEMPTS


# --- helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings_url", "referer", "expected"),
    [
        ("http://127.0.0.1:9000/", "acme.amocrm.ru", "http://127.0.0.1:9000"),
        (None, "acme.amocrm.ru", "https://acme.amocrm.ru"),
        (None, "https://Acme.Kommo.com/leads/", "https://acme.kommo.com"),
        (None, "acme", "https://acme.amocrm.ru"),
    ],
)
def test_account_base_url(settings_url: str | None, referer: str, expected: str) -> None:
    assert account_base_url(settings_url, referer) == expected


@pytest.mark.parametrize("referer", ["", "a_b.amocrm.ru", "-acme.amocrm.ru", "acme..amocrm.ru"])
def test_account_base_url_rejects_non_hosts(referer: str) -> None:
    with pytest.raises(ValueError, match="domain"):
        account_base_url(None, referer)
