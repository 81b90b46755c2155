"""The sandbox served over real HTTP on loopback, with one account installed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from amosync.sandbox import AmoCRMSimulator, Sandbox, UnisenderSimulator, serve

ACCOUNT_ID = 30896271
CLIENT_ID = "5e3f7c0a-1b2c-4d5e-8f90-0123456789ab"
CLIENT_SECRET = "sandbox-test-secret-" + "x" * 44
REDIRECT_URI = "https://amosync.example.test/vidget"
KEY = "unisender-test-key"


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
