"""The Unisender client against scripted answers (httpx.MockTransport): request encoding,
result parsing, error classification and retries."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import stamina

from amosync.errors import InvalidApiKey, PermanentUpstreamError, TransientUpstreamError
from amosync.unisender.client import UnisenderClient, encode_import
from amosync.unisender.models import ImportRow
from amosync.upstream.ratelimit import make_limiter
from tests.transport import Script

BASE = "https://api.unisender.com/ru/api"
KEY = "6x3k-secret-api-key-value"
ATTEMPTS = 3


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=ATTEMPTS):
        yield


def ok(result: Any) -> httpx.Response:
    return httpx.Response(200, json={"result": result})


def error(message: str, code: str) -> httpx.Response:
    # Unisender reports errors with HTTP 200.
    return httpx.Response(200, json={"error": message, "code": code, "result": ""})


def client_for(script: Script, *, rate: float = 1000) -> UnisenderClient:
    return UnisenderClient(BASE, KEY, make_limiter(rate), http=script.client())


# --- requests and results -------------------------------------------------------------------


async def test_get_lists_posts_the_key_in_the_body_never_the_url() -> None:
    script = Script(ok([{"id": 55688, "title": "amoCRM"}, {"id": 224589, "title": "Другой"}]))
    async with client_for(script) as client:
        lists = await client.get_lists()

    assert [(item.id, item.title) for item in lists] == [(55688, "amoCRM"), (224589, "Другой")]
    (request,) = script.requests
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/getLists?format=json"
    assert KEY not in str(request.url)
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert script.form() == {"api_key": KEY}


async def test_create_list_returns_its_id() -> None:
    script = Script(ok({"id": 777}))
    async with client_for(script) as client:
        assert await client.create_list("amoCRM: Acme") == 777
    assert script.requests[0].url.path.endswith("/createList")
    assert script.form()["title"] == "amoCRM: Acme"


async def test_import_contacts_encodes_rows_as_indexed_arrays() -> None:
    result = {
        "total": 3,
        "inserted": 1,
        "updated": 1,
        "deleted": 0,
        "new_emails": 1,
        "invalid": 1,
        "log": [{"index": "2", "code": "invalid_email", "message": "Invalid e-mail"}],
    }
    script = Script(ok(result))
    rows = [
        ImportRow("ann@example.com", "Анна & Co"),
        ImportRow("bob+tag@example.com", ""),
        ImportRow("not an email", "Broken"),
    ]
    async with client_for(script) as client:
        imported = await client.import_contacts(rows, list_id=55688)

    form = script.form()
    assert script.requests[0].url.path.endswith("/importContacts")
    assert form["api_key"] == KEY
    assert [form[f"field_names[{i}]"] for i in range(3)] == ["email", "Name", "email_list_ids"]
    assert [form[f"data[{r}][0]"] for r in range(3)] == [row.email for row in rows]
    assert [form[f"data[{r}][1]"] for r in range(3)] == [row.name for row in rows]
    assert {form[f"data[{r}][2]"] for r in range(3)} == {"55688"}
    assert not any("email_status" in value for value in form.values())
    assert (imported.total, imported.inserted, imported.updated, imported.invalid) == (3, 1, 1, 1)
    (entry,) = imported.log
    assert (entry.index, entry.code, entry.message) == (2, "invalid_email", "Invalid e-mail")


async def test_import_refuses_more_than_500_rows_without_calling() -> None:
    script = Script(ok({}))
    async with client_for(script) as client:
        with pytest.raises(ValueError, match="500"):
            await client.import_contacts(
                [ImportRow(f"{i}@example.com") for i in range(501)], list_id=1
            )
        assert (await client.import_contacts([], list_id=1)).total == 0
    assert script.requests == []


def test_encoding_500_rows_is_cheap() -> None:
    rows = [ImportRow(f"user{i}@example.com", f"User Number {i}") for i in range(500)]
    started = time.perf_counter()
    for _ in range(100):
        body = encode_import(KEY, rows, 55688)
    # 50,000 rows; a 1M-contact sync needs 20x this, so it must stay well under a second.
    assert time.perf_counter() - started < 1.0
    assert body.count(b"&data%5B") == 1500


@pytest.mark.parametrize(
    "name",
    ["Иван Петров", "Anna & Co = 100%", "a+b c", "Zoë", "日本", "", "tab\tnew\nline", "😀 x"],
)
def test_every_name_reads_back_as_written(name: str) -> None:
    rows = [ImportRow("ann@example.com", name), ImportRow("b.o-b_1~@example.com", name)]
    form = dict(parse_qsl(encode_import(KEY, rows, 7).decode(), keep_blank_values=True))
    assert form["data[0][1]"] == form["data[1][1]"] == name
    assert form["data[1][0]"] == "b.o-b_1~@example.com"


async def test_exclude_names_the_lists() -> None:
    script = Script(ok({}))
    async with client_for(script) as client:
        await client.exclude("ann@example.com", [55688, 224589])
    form = script.form()
    assert script.requests[0].url.path.endswith("/exclude")
    assert (form["contact_type"], form["contact"], form["list_ids"]) == (
        "email",
        "ann@example.com",
        "55688,224589",
    )


async def test_exclude_of_an_address_not_in_the_list_succeeds() -> None:
    script = Script(error('Contact "gone@example.com" not found', "unspecified"))
    async with client_for(script) as client:
        await client.exclude("gone@example.com", [1])
    assert len(script.requests) == 1


async def test_exclude_without_lists_is_refused() -> None:
    # Unisender would exclude the address from every list.
    async with client_for(Script(ok({}))) as client:
        with pytest.raises(ValueError, match="list"):
            await client.exclude("ann@example.com", [])


async def test_get_contact_reads_status_and_lists() -> None:
    result = {
        "email": {
            "email": "ann@example.com",
            "added_at": "2024-01-02 10:00:00",
            "status": "unsubscribed",
            "availability": "available",
        },
        "lists": [
            {"id": "55688", "status": "active", "added_at": "2024-01-02 10:00:00"},
            {"id": 224589, "status": "unsubscribed", "added_at": "2024-01-03 10:00:00"},
        ],
        "fields": [],
    }
    script = Script(ok(result))
    async with client_for(script) as client:
        found = await client.get_contact("ann@example.com")

    assert found is not None
    assert (found.email, found.status, found.availability) == (
        "ann@example.com",
        "unsubscribed",
        "available",
    )
    assert found.in_list(55688)
    assert found.in_list(224589)
    assert not found.in_list(1)
    assert found.fields == {}
    form = script.form()
    assert (form["email"], form["include_lists"]) == ("ann@example.com", "1")


async def test_get_contact_unknown_address_is_none() -> None:
    script = Script(error("Контакт не найден", "unspecified"))
    async with client_for(script) as client:
        assert await client.get_contact("nobody@example.com") is None


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["invalid_api_key", "access_denied"])
async def test_refused_key_is_invalid_api_key_and_not_retried(code: str) -> None:
    script = Script(error("Incorrect API key", code))
    async with client_for(script) as client:
        with pytest.raises(InvalidApiKey) as caught:
            await client.get_lists()
    assert len(script.requests) == 1
    assert caught.value.code == code
    assert caught.value.api == "unisender"
    assert KEY not in f"{caught.value} {caught.value.body}"


async def test_invalid_arg_is_permanent_with_its_code() -> None:
    script = Script(error("List with title &quot;amoCRM&quot; already exists", "invalid_arg"))
    async with client_for(script) as client:
        with pytest.raises(PermanentUpstreamError) as caught:
            await client.create_list("amoCRM")
    assert not isinstance(caught.value, InvalidApiKey)
    assert caught.value.code == "invalid_arg"
    assert 'List with title "amoCRM" already exists' in str(caught.value)
    assert len(script.requests) == 1


async def test_retry_later_is_retried() -> None:
    script = Script(error("Temporary failure", "retry_later"), ok([{"id": 1, "title": "x"}]))
    async with client_for(script) as client:
        assert [item.id for item in await client.get_lists()] == [1]
    assert len(script.requests) == 2


@pytest.mark.parametrize(
    "code", ["api_call_limit_exceeded_for_api_key", "api_call_limit_exceeded_for_ip"]
)
async def test_call_limit_becomes_transient_after_bounded_attempts(code: str) -> None:
    script = Script(error("Limit exceeded", code))
    async with client_for(script) as client:
        with pytest.raises(TransientUpstreamError) as caught:
            await client.import_contacts([ImportRow("a@example.com")], list_id=1)
    assert caught.value.code == code
    assert len(script.requests) == ATTEMPTS


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(503, text="<html>maintenance</html>"),
        httpx.Response(429, headers={"Retry-After": "1"}),
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
    ],
    ids=["503", "429", "timeout", "connect"],
)
async def test_http_failures_are_transient_and_retried(answer: Any) -> None:
    script = Script(answer)
    async with client_for(script) as client:
        with pytest.raises(TransientUpstreamError) as caught:
            await client.get_lists()
    assert len(script.requests) == ATTEMPTS
    assert caught.value.api == "unisender"


async def test_transient_failure_then_success() -> None:
    script = Script(httpx.Response(502), ok([]))
    async with client_for(script) as client:
        assert await client.get_lists() == []


async def test_non_json_answer_is_permanent() -> None:
    script = Script(httpx.Response(200, text="<html>not json</html>"))
    async with client_for(script) as client:
        with pytest.raises(PermanentUpstreamError) as caught:
            await client.get_lists()
    assert caught.value.body == "<html>not json</html>"


async def test_calls_are_paced_by_the_limiter() -> None:
    script = Script(ok([]))
    async with client_for(script, rate=10) as client:
        started = time.monotonic()
        for _ in range(4):
            await client.get_lists()
    assert time.monotonic() - started >= 0.3


async def test_repr_hides_the_key() -> None:
    async with UnisenderClient(BASE, KEY, make_limiter(1)) as client:
        assert KEY not in repr(client)


async def test_observer_sees_every_attempt() -> None:
    seen: list[tuple[str, str]] = []
    script = Script(
        error("Too many requests", "api_call_limit_exceeded_for_api_key"),
        httpx.Response(503),
        httpx.ReadTimeout("slow"),
        ok([]),
        error("Invalid list id", "invalid_arg"),
    )
    observer = lambda api, outcome, _seconds: seen.append((api, outcome))  # noqa: E731
    with stamina.set_testing(True, attempts=4):
        async with UnisenderClient(
            BASE, KEY, make_limiter(1000), http=script.client(), observer=observer
        ) as client:
            await client.get_lists()
            with pytest.raises(PermanentUpstreamError):
                await client.get_lists()
    assert seen == [
        ("unisender", "rate_limited"),
        ("unisender", "transient"),
        ("unisender", "transient"),
        ("unisender", "ok"),
        ("unisender", "permanent"),
    ]


async def test_a_shared_http_client_is_left_open() -> None:
    script = Script(ok([]))
    shared = script.client()
    async with UnisenderClient(BASE, KEY, make_limiter(1000), http=shared) as client:
        await client.get_lists()
    assert not shared.is_closed
    own = UnisenderClient(BASE, KEY, make_limiter(1000))
    await own.aclose()
    assert own._http.is_closed  # the one it made is closed with it
    await shared.aclose()
