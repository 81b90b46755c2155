"""Pure ASGI middlewares: the request body limit, CORS for the widget.

The dashboard's security headers are set on its own responses (`amosync.web.security`).

Pure ASGI rather than Starlette's BaseHTTPMiddleware, which runs the app in a task and
copies every response through a stream: measurably slower on the webhook path.

Routes are chosen with `paths` everywhere: an entry ending in "/" is a prefix
("/accounts/" covers "/accounts/1"); any other entry is a path and the paths below it
("/sync" covers "/sync" and "/sync/7", not "/synchronize"); `{name}` in an entry stands
for one path segment ("/accounts/{id}/settings" covers "/accounts/7/settings" and the paths
below it, not "/accounts/settings"). The widget's CORS also takes
the methods of each path, so an admin-only method on a widget path (PUT /accounts/7) gets
no CORS answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from amosync.http.body import MAX_JSON_DEPTH, json_too_deep
from amosync.http.hosts import is_host_name

Headers = list[tuple[bytes, bytes]]


PathMatcher = tuple[tuple[str, ...], tuple[str, ...], tuple[re.Pattern[str], ...]]

_SEGMENT = re.compile(r"\{[^{}/]+\}")


def _template(path: str) -> re.Pattern[str]:
    parts = _SEGMENT.split(path)
    body = "[^/]+".join(re.escape(part) for part in parts)
    # Like an exact path, a template covers the paths below it; ending in "/", only those.
    return re.compile(body + (".*" if path.endswith("/") else "(?:/.*)?"), re.DOTALL)


def path_matcher(paths: Iterable[str]) -> PathMatcher:
    """(exact paths, prefixes, templates) for `matches`; see the module doc for the rule."""
    paths = list(paths)
    templates = tuple(_template(p) for p in paths if _SEGMENT.search(p))
    plain = [p for p in paths if not _SEGMENT.search(p)]
    exact = tuple(p for p in plain if not p.endswith("/"))
    prefixes = tuple(p for p in plain if p.endswith("/")) + tuple(p + "/" for p in exact)
    return exact, prefixes, templates


def matches(path: str, matcher: PathMatcher) -> bool:
    exact, prefixes, templates = matcher
    return (
        path in exact
        or path.startswith(prefixes)
        or any(template.fullmatch(path) for template in templates)
    )


async def send_json_error(
    send: Send, status: int, code: str, detail: str, headers: Headers | None = None
) -> None:
    """A response in the shape of every amosync error: {"error", "detail"}."""
    body = orjson.dumps({"error": code, "detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


MAX_BODY = 1024 * 1024  # the service's request body limit


class BodyRefused(Exception):
    """A body refused before the app saw it: too large, or an invalid Content-Length."""

    def __init__(self, status: int, code: str, detail: str, headers: Headers) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers

    async def answer(self, send: Send) -> None:
        await send_json_error(send, self.status, self.code, self.detail, self.headers)


async def read_body(scope: Scope, receive: Receive, max_bytes: int) -> bytes | None:
    """The whole request body, at most `max_bytes`; None when the client went away.

    A declared Content-Length over the limit is refused before anything is read, and a
    chunked body as soon as it grows past it (`BodyRefused`).
    """
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit():
                raise BodyRefused(400, "bad_request", "invalid Content-Length", [])
            # More digits than any limit has is too large, whatever int() would say.
            if len(value) > 18 or int(value) > max_bytes:
                raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large(max_bytes: int) -> BodyRefused:
    detail = f"the request body is larger than {max_bytes} bytes"
    # The rest of the body is not read: the connection cannot be reused.
    return BodyRefused(413, "payload_too_large", detail, [(b"connection", b"close")])


_FORMS = (b"application/x-www-form-urlencoded", b"multipart/form-data")


def _may_be_json(scope: Scope) -> bool:
    """Whether the app may read the body as JSON: FastAPI does without a Content-Type, and
    `amosync.http.body` for any type but a form's."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return not value.lower().lstrip().startswith(_FORMS)
    return True


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`, declared or streamed; the app never sees it.

    The body is read up front (`read_body`: it is at most `max_bytes`) and replayed to the
    app, so a chunked body that grows past the limit is refused before the app has seen a
    byte of it. A body that may be read as JSON and nests deeper than `MAX_JSON_DEPTH` is
    refused too (422): the json module would recurse through it into a RecursionError.
    `json_exempt` paths parse JSON themselves, without recursion and with errors of their
    own (JSON-RPC's -32700 at /rpc).
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int = MAX_BODY, json_exempt: Iterable[str] = ("/rpc",)
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.json_exempt = path_matcher(json_exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(scope, receive, self.max_bytes)
        except BodyRefused as refused:
            await refused.answer(send)
            return
        if body is None:
            return  # the client is gone: nobody to answer
        if (
            _may_be_json(scope)
            and not matches(scope.get("path", ""), self.json_exempt)
            and json_too_deep(body)
        ):
            detail = f"the body is not valid JSON, or nests deeper than {MAX_JSON_DEPTH} levels"
            await send_json_error(send, 422, "invalid_request", detail)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                # Later calls wait for the disconnect, as they would without us.
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def allowed_origin(origin: str, suffixes: Iterable[str]) -> bool:
    """`https://<sub>.amocrm.ru` and the like: https, a subdomain, an exact suffix, no port.

    The host is read by the same check as the install's referer (`amosync.http.hosts`).
    """
    scheme, sep, host = origin.lower().partition("://")
    if scheme != "https" or not sep or not is_host_name(host):
        return False
    return any(host.endswith(suffix) and len(host) > len(suffix) for suffix in suffixes)


ANY_METHOD = ("GET", "POST", "PUT", "DELETE")


class WidgetCORSMiddleware:
    """CORS for amoCRM/Kommo account pages (`https://<sub>.amocrm.ru` …), on `paths` only.

    `paths` is either a list (every method of those paths) or a mapping from path to the
    methods the widget uses there: `{"/sync": ["GET", "POST"], "/accounts/": ["GET"]}`.
    A (path, method) outside them is left to the app, untouched, as for any other route.

    A preflight from an allowed origin is answered 204 here; from any other origin 403.
    Actual requests from an allowed origin get Access-Control-Allow-Origin; from any other,
    no CORS header at all, so the browser keeps the answer from the page. Responses on
    these paths always carry Vary: Origin, so a cache never serves one origin's answer to
    another.
    """

    allow_headers = b"X-Auth-Token, Content-Type, Authorization"
    max_age = b"600"

    def __init__(
        self,
        app: ASGIApp,
        paths: Iterable[str] | Mapping[str, Iterable[str]],
        origin_suffixes: Iterable[str] = (".amocrm.ru", ".amocrm.com", ".kommo.com"),
    ) -> None:
        self.app = app
        routes = paths if isinstance(paths, Mapping) else dict.fromkeys(paths, ANY_METHOD)
        self.routes = [
            (path_matcher([path]), frozenset(m.upper() for m in methods))
            for path, methods in routes.items()
        ]
        # A suffix without its dot would let "https://evilamocrm.ru" in.
        self.suffixes = tuple("." + s.lstrip(".").lower() for s in origin_suffixes)

    def methods(self, path: str) -> frozenset[str]:
        """The methods the widget may call `path` with (empty: not a widget path)."""
        found: frozenset[str] = frozenset()
        for matcher, methods in self.routes:
            if matches(path, matcher):
                found |= methods
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        methods = self.methods(scope["path"]) if scope["type"] == "http" else frozenset()
        if not methods:
            await self.app(scope, receive, send)
            return
        origin = b""
        requested = b""
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                requested = value
        preflight = scope["method"] == "OPTIONS" and bool(requested)
        method = requested.decode("latin-1").upper() if preflight else scope["method"]
        if method not in methods:
            # An admin-only method on a widget path: no CORS, as on any admin route.
            await self.app(scope, receive, send)
            return
        allowed = bool(origin) and allowed_origin(origin.decode("latin-1"), self.suffixes)
        cors: Headers = [(b"vary", b"Origin")]
        if allowed:
            cors.append((b"access-control-allow-origin", origin))
        if preflight and origin:
            await self._preflight(send, cors, allowed, methods)
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        await self.app(scope, receive, with_cors)

    async def _preflight(
        self, send: Send, cors: Headers, allowed: bool, methods: frozenset[str]
    ) -> None:
        if not allowed:
            detail = "only pages of amoCRM and Kommo accounts (https://*.amocrm.ru …) may call"
            await send_json_error(send, 403, "origin_not_allowed", detail, headers=cors)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [
                    *cors,
                    (b"access-control-allow-methods", _method_list(methods)),
                    (b"access-control-allow-headers", self.allow_headers),
                    (b"access-control-max-age", self.max_age),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})


def _method_list(methods: frozenset[str]) -> bytes:
    ordered = [m for m in (*ANY_METHOD, "OPTIONS") if m in methods or m == "OPTIONS"]
    ordered += sorted(methods - set(ordered))
    return ", ".join(ordered).encode("latin-1")
