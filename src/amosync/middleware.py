"""Pure ASGI middlewares: the request body limit and CORS for the widget routes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_ORIGIN = re.compile(r"^https://[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9-]+)*$")


async def _json_error(
    send: Send,
    status: int,
    code: str,
    detail: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps({"error": code, "detail": detail}).encode()
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


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`, declared or streamed; the app never sees it."""

    def __init__(self, app: ASGIApp, max_bytes: int = 1024 * 1024) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the request body is over {self.max_bytes // 1024} KiB"
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _json_error(send, 400, "bad_request", "invalid Content-Length")
                    return
                if declared > self.max_bytes:
                    await _json_error(send, 413, "payload_too_large", too_large)
                    return
        # Read the body up front (it is at most max_bytes), so a streamed body over the
        # limit is refused before the app sees any of it.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _json_error(send, 413, "payload_too_large", too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def allowed_origin(origin: str, suffixes: Iterable[str]) -> bool:
    """`https://<sub>.amocrm.ru` and the like: https, a subdomain, an exact suffix."""
    origin = origin.lower()
    if not _ORIGIN.match(origin):
        return False
    host = origin.removeprefix("https://")
    return any(host.endswith(suffix) and len(host) > len(suffix) for suffix in suffixes)


class WidgetCORSMiddleware:
    """CORS for amoCRM/Kommo account origins, on the widget routes only."""

    def __init__(
        self,
        app: ASGIApp,
        paths: Iterable[str],
        origin_suffixes: Iterable[str] = (".amocrm.ru", ".amocrm.com", ".kommo.com"),
    ) -> None:
        self.app = app
        self.paths = tuple(paths)
        self.suffixes = tuple(origin_suffixes)

    def _widget_path(self, path: str) -> bool:
        return any(
            path == p or (p.endswith("/") and path.startswith(p)) or path.startswith(p + "/")
            for p in self.paths
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._widget_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        origin = headers.get(b"origin", b"").decode("latin-1")
        if not origin:
            await self.app(scope, receive, send)
            return
        ok = allowed_origin(origin, self.suffixes)
        cors = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"vary", b"Origin"),
        ]
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            if not ok:
                await _json_error(
                    send, 403, "origin_not_allowed", "only amoCRM and Kommo pages may call this"
                )
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [
                        *cors,
                        (b"access-control-allow-methods", b"GET, POST, PUT, DELETE, OPTIONS"),
                        (
                            b"access-control-allow-headers",
                            b"X-Auth-Token, Content-Type, Authorization",
                        ),
                        (b"access-control-max-age", b"600"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        if not ok:
            await self.app(scope, receive, send)
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        await self.app(scope, receive, with_cors)
