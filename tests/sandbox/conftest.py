"""The sandbox served over real HTTP on loopback, with one account installed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson
import pytest
from aiolimiter import AsyncLimiter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from amosync.sandbox import AmoCRMSimulator, Sandbox, UnisenderSimulator, serve
from tests.servers import serving

ACCOUNT_ID = 30896271
CLIENT_ID = "5e3f7c0a-1b2c-4d5e-8f90-0123456789ab"
CLIENT_SECRET = "sandbox-test-secret-" + "x" * 44
REDIRECT_URI = "https://amosync.example.test/vidget"
KEY = "unisender-test-key"


class FixedToken:
    """A TokenSource for the sandbox's account: its token, never refreshed."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def access_token(self) -> str:
        return self.token

    async def refresh(self, stale: str) -> str:
        return stale


def limiter() -> AsyncLimiter:
    """A rate limit no test reaches."""
    return AsyncLimiter(1000, 1)


@dataclass
class Served:
    sandbox: Sandbox
    url: str
    http: httpx.AsyncClient  # no credentials, base URL = the sandbox

    @property
    def amo(self) -> AmoCRMSimulator:
        return self.sandbox.amocrm

    @property
    def uni(self) -> UnisenderSimulator:
        return self.sandbox.unisender

    async def token_request(self, **body: str) -> httpx.Response:
        base = {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uri": REDIRECT_URI,
        }
        return await self.http.post("/oauth2/access_token", json={**base, **body})

    async def install(self) -> dict[str, Any]:
        """Exchange a fresh code; returns the token pair."""
        code = self.amo.issue_code(ACCOUNT_ID, CLIENT_ID)
        response = await self.token_request(grant_type="authorization_code", code=code)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def api(self, method: str, path: str, token: str, **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return await self.http.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]

    async def unisender(self, method: str, **params: str) -> httpx.Response:
        """A Unisender call as clients make it: form body, `format=json` in the query."""
        response = await self.http.post(
            f"/ru/api/{method}", params={"format": "json"}, data={"api_key": KEY, **params}
        )
        assert response.status_code == 200, response.text
        return response


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    sandbox = Sandbox()
    sandbox.amocrm.add_integration(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI)
    sandbox.amocrm.add_account(account_id=ACCOUNT_ID, subdomain="acme", name="Acme")
    sandbox.unisender.add_key(KEY)
    async with serve(sandbox, host="127.0.0.1", port=0) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            yield Served(sandbox, url, http)


@pytest.fixture
async def token(served: Served) -> str:
    return (await served.install())["access_token"]


class Receiver:
    """A loopback endpoint for what the sandbox posts (amoCRM's webhooks, Unisender's
    hooks): keeps every body; answers `status` after `delay` seconds."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, bytes]] = []  # content type, body
        self.status = 200
        self.delay = 0.0

    async def endpoint(self, request: Request) -> Response:
        self.posted.append((request.headers["content-type"], await request.body()))
        if self.delay:
            await asyncio.sleep(self.delay)
        return Response("ok", self.status)

    @property
    def bodies(self) -> list[bytes]:
        return [body for _, body in self.posted]

    @property
    def received(self) -> list[tuple[str, dict[str, str]]]:
        """Form bodies (amoCRM's webhooks) with their content type."""
        return [(kind, dict(parse_qsl(body.decode()))) for kind, body in self.posted]

    @property
    def events(self) -> list[dict[str, Any]]:
        """JSON bodies (Unisender's hook notifications)."""
        return [orjson.loads(body) for body in self.bodies]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    """A receiver served on loopback, and the URL to register for it."""
    target = Receiver()
    app = Starlette(routes=[Route("/webhook", target.endpoint, methods=["POST"])])
    async with serving(app) as url:
        yield target, f"{url}/webhook?token=secret-1"
