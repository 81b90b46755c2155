"""Dashboard fixtures: the app with the dashboard over ASGI, a logged-in operator, and
helpers that put rows straight into the database."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from amosync.app import create_app
from amosync.db.models import Account, Contact, Job, SyncRun, utcnow
from amosync.runtime.services import Services
from tests.browser import chromium
from tests.conftest import ADMIN_TOKEN

ACCOUNT_ID = 30896271
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def dashboard_app(services: Services) -> FastAPI:
    app = create_app(services=services, migrate=False, worker=False)
    app.state.services = services
    return app


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """The system Chromium, for the tests that drive the dashboard in a real browser."""
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def web(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client without credentials (it keeps cookies)."""
    transport = httpx.ASGITransport(app=dashboard_app(services), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://amosync.test") as http:
        yield http


async def log_in(http: httpx.AsyncClient, token: str = ADMIN_TOKEN) -> httpx.Response:
    return await http.post("/login", data={"token": token})


@pytest.fixture
async def operator(web: httpx.AsyncClient) -> httpx.AsyncClient:
    """The same client after a successful login."""
    response = await log_in(web)
    assert response.status_code == 303
    return web


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


async def csrf(http: httpx.AsyncClient, path: str = "/") -> str:
    response = await http.get(path)
    assert response.status_code == 200
    return csrf_of(response.text)


async def add(services: Services, *rows: Any) -> None:
    async with services.sessions() as session, session.begin():
        for row in rows:
            session.add(row)
            # Flush one by one: rows of different tables depend on each other (FKs).
            await session.flush()


def account(account_id: int = ACCOUNT_ID, **fields: Any) -> Account:
    values: dict[str, Any] = {
        "name": "Acme Ltd",
        "subdomain": "acme",
        "status": "active",
        "settings": {},
    }
    values.update(fields)
    return Account(id=account_id, **values)


def contact(amocrm_id: int, state: str = "synced", **fields: Any) -> Contact:
    values: dict[str, Any] = {
        "account_id": ACCOUNT_ID,
        "name": f"Contact {amocrm_id}",
        "emails": [f"c{amocrm_id}@example.com"],
        "state": state,
        "synced_at": utcnow() if state == "synced" else None,
    }
    values.update(fields)
    return Contact(amocrm_id=amocrm_id, **values)


def running_run(**fields: Any) -> SyncRun:
    values: dict[str, Any] = {
        "account_id": ACCOUNT_ID,
        "status": "running",
        "fetched": 250,
        "synced": 50,
        "unsynced": 10,
        "failed": 0,
        "expected": 200,
        "started_at": utcnow() - timedelta(seconds=20),
    }
    values.update(fields)
    return SyncRun(**values)


def failed_job(**fields: Any) -> Job:
    values: dict[str, Any] = {
        "account_id": ACCOUNT_ID,
        "kind": "changes",
        "payload": {},
        "status": "failed",
        "attempts": 8,
        "max_attempts": 8,
        "last_error": "unisender: service unavailable status=503",
    }
    values.update(fields)
    return Job(**values)
