"""The pure ASGI middlewares, around a tiny Starlette app, over httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from amosync.http.middleware import (
    BodyLimitMiddleware,
    WidgetCORSMiddleware,
    allowed_origin,
    matches,
    path_matcher,
)

LIMIT = 1000


def tiny_app(seen: list[dict[str, Any]]) -> Starlette:
    """Echoes what it was given; records every request it saw."""

    async def echo(request: Request) -> Response:
        body = await request.body()
        seen.append({"path": request.url.path, "method": request.method, "body": body})
        if request.url.path == "/own-csp":
            return Response("x", headers={"Content-Security-Policy": "default-src *"})
        nonce = getattr(request.state, "csp_nonce", None)
        return JSONResponse({"size": len(body), "nonce": nonce})

    methods = ["GET", "POST", "PUT", "DELETE", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", echo, methods=methods)])


@pytest.fixture
def seen() -> list[dict[str, Any]]:
    return []


def client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


# --- body limit -----------------------------------------------------------------------


async def test_a_body_within_the_limit_reaches_the_app_whole(seen: list[dict[str, Any]]) -> None:
    async with client(BodyLimitMiddleware(tiny_app(seen), max_bytes=LIMIT)) as http:
        exact = await http.post("/webhook", content=b"x" * LIMIT)
        streamed = await http.post("/webhook", content=chunks(b"a" * 400, b"b" * 400, b"c" * 200))
        empty = await http.get("/health")
    assert exact.json()["size"] == LIMIT
    assert streamed.json()["size"] == LIMIT
    assert seen[1]["body"] == b"a" * 400 + b"b" * 400 + b"c" * 200
    assert empty.status_code == 200


async def test_a_declared_length_over_the_limit_is_refused(seen: list[dict[str, Any]]) -> None:
    async with client(BodyLimitMiddleware(tiny_app(seen), max_bytes=LIMIT)) as http:
        response = await http.post("/webhook", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert str(LIMIT) in response.json()["detail"]
    assert seen == []


async def test_a_streamed_body_growing_past_the_limit_is_refused(
    seen: list[dict[str, Any]],
) -> None:
    pulled: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for n in range(100):
            pulled.append(n)
            yield b"x" * 300

    async with client(BodyLimitMiddleware(tiny_app(seen), max_bytes=LIMIT)) as http:
        response = await http.post("/webhook", content=endless())
    assert "content-length" not in response.request.headers  # really chunked
    assert response.status_code == 413
    assert response.json() == {
        "error": "payload_too_large",
        "detail": f"the request body is larger than {LIMIT} bytes",
    }
    assert seen == []
    assert len(pulled) == 4  # stopped reading at the first chunk over the limit


async def raw_call(app: ASGIApp, scope: dict[str, Any], messages: list[Message]) -> list[Message]:
    sent: list[Message] = []
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def http_scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/x", "headers": headers, "query_string": b""}


@pytest.mark.parametrize("value", [b"abc", b"-1", b"", b"9" * 5000])
async def test_a_bad_or_absurd_content_length_is_refused(
    seen: list[dict[str, Any]], value: bytes
) -> None:
    app = BodyLimitMiddleware(tiny_app(seen), max_bytes=LIMIT)
    sent = await raw_call(app, http_scope([(b"content-length", value)]), [])
    assert sent[0]["status"] in (400, 413)
    assert seen == []


async def test_a_client_that_disconnects_mid_body_gets_nothing(seen: list[dict[str, Any]]) -> None:
    app = BodyLimitMiddleware(tiny_app(seen), max_bytes=LIMIT)
    messages: list[Message] = [{"type": "http.request", "body": b"x", "more_body": True}]
    assert await raw_call(app, http_scope([]), messages) == []
    assert seen == []


async def test_other_scopes_pass_through() -> None:
    called: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:  # noqa: ARG001
        called.append(scope["type"])

    await BodyLimitMiddleware(app)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert called == ["lifespan"]


# --- widget CORS ----------------------------------------------------------------------

WIDGET_PATHS = ("/vidget/unisender", "/sync", "/accounts/")


def cors_app(seen: list[dict[str, Any]], **kwargs: Any) -> ASGIApp:
    return WidgetCORSMiddleware(tiny_app(seen), paths=WIDGET_PATHS, **kwargs)


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-auth-token, content-type",
    }


@pytest.mark.parametrize(
    "origin",
    [
        "https://acme.amocrm.ru",
        "https://acme.amocrm.com",
        "https://acme.kommo.com",
        "https://ACME.AmoCRM.ru",
        "https://xn--80aswg.amocrm.ru",
        "https://a-b.c.kommo.com",
    ],
)
async def test_a_preflight_from_an_account_page_is_answered(
    seen: list[dict[str, Any]], origin: str
) -> None:
    async with client(cors_app(seen)) as http:
        response = await http.options("/vidget/unisender", headers=preflight_headers(origin))
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == origin
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"x-auth-token", "content-type"} <= allowed
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["vary"] == "Origin"
    assert seen == []


FOREIGN = [
    "https://evilamocrm.ru",
    "https://x.amocrm.ru.evil.com",
    "https://amocrm.ru",
    "https://.amocrm.ru",
    "http://acme.amocrm.ru",
    "https://acme.amocrm.ru:8443",
    "https://acme.amocrm.ru/",
    "https://user@acme.amocrm.ru",
    "https://a_b.amocrm.ru",
    "https://-a.amocrm.ru",
    "https://a..amocrm.ru",
    "null",
    "https://acme.amocrm.ru.",
    "https://acme.kommo.com.ru",
]


@pytest.mark.parametrize("origin", FOREIGN)
async def test_a_preflight_from_anywhere_else_is_refused(
    seen: list[dict[str, Any]], origin: str
) -> None:
    async with client(cors_app(seen)) as http:
        response = await http.options("/sync", headers=preflight_headers(origin))
    assert response.status_code == 403
    assert response.json()["error"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in response.headers
    assert seen == []


async def test_actual_requests_get_the_origin_echoed_only_when_allowed(
    seen: list[dict[str, Any]],
) -> None:
    async with client(cors_app(seen)) as http:
        ours = await http.post("/sync", headers={"Origin": "https://acme.kommo.com"}, json={})
        theirs = await http.post("/sync", headers={"Origin": "https://evil.com"}, json={})
        none = await http.get("/accounts/7")
    assert ours.headers["access-control-allow-origin"] == "https://acme.kommo.com"
    assert "access-control-allow-origin" not in theirs.headers
    assert "access-control-allow-origin" not in none.headers
    # The answer depends on Origin: caches must know it, whoever asked.
    assert [r.headers["vary"] for r in (ours, theirs, none)] == ["Origin"] * 3
    assert len(seen) == 3  # the app still answers: the browser is what withholds it


@pytest.mark.parametrize(
    ("path", "covered"),
    [
        ("/sync", True),
        ("/sync/12", True),
        ("/synchronize", False),
        ("/accounts/1", True),
        ("/accounts", False),
        ("/vidget/unisender", True),
        ("/vidget", False),
        ("/webhook", False),
    ],
)
async def test_cors_only_on_the_widget_paths(
    seen: list[dict[str, Any]], path: str, covered: bool
) -> None:
    origin = "https://acme.amocrm.ru"
    async with client(cors_app(seen)) as http:
        actual = await http.get(path, headers={"Origin": origin})
        preflight = await http.options(path, headers=preflight_headers(origin))
    assert ("access-control-allow-origin" in actual.headers) is covered
    assert ("access-control-allow-origin" in preflight.headers) is covered
    # Outside the widget paths, a preflight is the app's business.
    assert (len(seen) == 2) is not covered


async def test_cors_only_for_the_widget_methods_of_a_path(seen: list[dict[str, Any]]) -> None:
    routes = {"/accounts/": ["get"], "/sync": ["GET", "POST"]}
    origin = "https://acme.amocrm.ru"
    async with client(WidgetCORSMiddleware(tiny_app(seen), paths=routes)) as http:
        read = await http.options(
            "/accounts/1",
            headers=preflight_headers(origin) | {"Access-Control-Request-Method": "GET"},
        )
        write = await http.options(
            "/accounts/1",
            headers=preflight_headers(origin) | {"Access-Control-Request-Method": "PUT"},
        )
        sync = await http.options("/sync", headers=preflight_headers(origin))
        put = await http.put("/accounts/1", headers={"Origin": origin})
        get = await http.get("/accounts/1", headers={"Origin": origin})
    assert read.status_code == 204
    assert read.headers["access-control-allow-methods"] == "GET, OPTIONS"
    assert sync.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    # PUT is not the widget's: the app answers the preflight and the call, without CORS.
    assert "access-control-allow-origin" not in write.headers
    assert "access-control-allow-origin" not in put.headers
    assert "vary" not in put.headers
    assert get.headers["access-control-allow-origin"] == origin
    assert [(r["method"], r["path"]) for r in seen] == [
        ("OPTIONS", "/accounts/1"),
        ("PUT", "/accounts/1"),
        ("GET", "/accounts/1"),
    ]


def test_suffixes_are_anchored_at_a_dot_even_when_configured_without_one() -> None:
    app = WidgetCORSMiddleware(tiny_app([]), paths=["/x"], origin_suffixes=["amocrm.ru"])
    assert app.suffixes == (".amocrm.ru",)
    assert not allowed_origin("https://evilamocrm.ru", app.suffixes)
    assert allowed_origin("https://good.amocrm.ru", app.suffixes)


# --- the same, through the real app ---------------------------------------------------

MB = 1024 * 1024


async def test_the_app_refuses_a_declared_body_over_1_mb(client: httpx.AsyncClient) -> None:
    for path in ("/webhook?token=x", "/rpc", "/vidget/unisender", "/accounts/5"):
        response = await client.post(path, content=b"x" * (MB + 1))
        assert response.status_code == 413, path
        assert response.json() == {
            "error": "payload_too_large",
            "detail": f"the request body is larger than {MB} bytes",
        }
    assert (await client.get("/accounts")).json()["items"] == []


async def test_the_app_refuses_a_streamed_body_growing_past_1_mb(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/vidget/unisender",
        content=chunks(*[b"y" * 65536] * 17),  # 1 MB + 64 KB, no Content-Length
        headers={"Content-Type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


async def test_a_body_of_exactly_1_mb_is_read(client: httpx.AsyncClient) -> None:
    body = b"[" + b" " * (MB - 2) + b"]"  # an empty JSON-RPC batch, padded to the limit
    response = await client.post("/rpc", content=body)
    assert response.status_code == 200
    assert response.json()["error"]["code"] == -32600


ACCOUNT_PAGES = ["https://acme.amocrm.ru", "https://x.kommo.com", "https://y.amocrm.com"]
WIDGET_CALLS = [
    ("POST", "/vidget/unisender"),
    ("GET", "/acchasuni"),
    ("POST", "/sync"),
    ("GET", "/sync/12"),
    ("GET", "/accounts/7"),
    ("GET", "/accounts/sync"),
    ("GET", "/accounts/unsync"),
    ("GET", "/accounts/integrations/7"),
]


def widget_preflight(origin: str, method: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "x-auth-token,content-type",
    }


@pytest.mark.parametrize("origin", ACCOUNT_PAGES)
async def test_the_app_answers_preflights_of_the_widget_routes(
    anon: httpx.AsyncClient, origin: str
) -> None:
    for method, path in WIDGET_CALLS:
        response = await anon.options(path, headers=widget_preflight(origin, method))
        assert response.status_code == 204, (method, path)
        assert response.headers["access-control-allow-origin"] == origin
        assert "x-auth-token" in response.headers["access-control-allow-headers"].lower()
        assert method in response.headers["access-control-allow-methods"]


@pytest.mark.parametrize(
    "origin", ["https://evilamocrm.ru", "http://acme.amocrm.ru", "https://acme.amocrm.ru.evil.com"]
)
async def test_the_app_refuses_preflights_from_other_origins(
    anon: httpx.AsyncClient, origin: str
) -> None:
    for method, path in WIDGET_CALLS:
        response = await anon.options(path, headers=widget_preflight(origin, method))
        assert response.status_code == 403, (method, path)
        assert response.json()["error"] == "origin_not_allowed"
        assert "access-control-allow-origin" not in response.headers
        actual = await anon.request(method, path, headers={"Origin": origin})
        assert "access-control-allow-origin" not in actual.headers


ADMIN_CALLS = [
    ("POST", "/accounts/7"),
    ("PUT", "/accounts/7"),
    ("DELETE", "/accounts/7"),
    ("GET", "/accounts"),
    ("POST", "/rpc"),
    ("GET", "/webhookwork"),
    ("PUT", "/integrations/7"),
    ("DELETE", "/integrations/7"),
    ("DELETE", "/request/7"),
    ("POST", "/webhook"),
    ("GET", "/vidget"),
]


async def test_admin_routes_answer_no_cors(client: httpx.AsyncClient) -> None:
    origin = ACCOUNT_PAGES[0]
    for method, path in ADMIN_CALLS:
        preflight = await client.options(path, headers=widget_preflight(origin, method))
        assert "access-control-allow-origin" not in preflight.headers, (method, path)
        assert preflight.status_code != 204, (method, path)
    # The admin's own calls work, they just never carry CORS headers.
    created = await client.post("/accounts/7", json={"name": "Acme"}, headers={"Origin": origin})
    assert created.status_code == 201
    assert "access-control-allow-origin" not in created.headers
    changed = await client.put("/accounts/7", json={"name": "Acme 2"}, headers={"Origin": origin})
    assert changed.status_code == 200
    assert "access-control-allow-origin" not in changed.headers
    # The widget's read of the same path does.
    shown = await client.get("/accounts/7", headers={"Origin": origin})
    assert shown.headers["access-control-allow-origin"] == origin
    assert shown.headers["vary"] == "Origin"


@pytest.mark.parametrize(
    ("path", "covered"),
    [
        ("/accounts/7/settings", True),
        ("/accounts/7/settings/choices", True),
        ("/accounts/settings", False),
        ("/accounts/7/8/settings", False),
        ("/accounts/7/settingsx", False),
        ("/accounts/7", False),
        ("/sync/3", True),
    ],
)
def test_a_path_template_stands_for_one_segment(path: str, covered: bool) -> None:
    matcher = path_matcher(["/accounts/{account_id}/settings", "/sync"])
    assert matches(path, matcher) is covered
