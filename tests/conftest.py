"""Shared fixtures: a real database (SQLite file and PostgreSQL), built by the migrations,
emptied between tests; the app over ASGI or real HTTP; captured logs."""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import structlog
from cryptography.fernet import Fernet
from sqlalchemy import text

from amosync.app import create_app
from amosync.config import Settings
from amosync.db.migrate import upgrade
from amosync.db.models import Base
from amosync.runtime.logging import configure_logging
from amosync.runtime.services import Services, build_services

PG_ADMIN_URL = os.environ.get("AMOSYNC_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ADMIN_TOKEN = "test-admin-" + secrets.token_hex(8)
ENCRYPTION_KEY = Fernet.generate_key().decode()


def _async_pg(url: str) -> str:
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


def _pg_execute(url: str, *statements: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    async def go() -> None:
        engine = create_async_engine(_async_pg(url), isolation_level="AUTOCOMMIT")
        async with engine.connect() as connection:
            for statement in statements:
                await connection.execute(text(statement))
        await engine.dispose()

    asyncio.run(go())


def _pg_ok() -> bool:
    try:
        _pg_execute(PG_ADMIN_URL, "SELECT 1")
        return True
    except Exception:
        return False


@contextmanager
def _pg_database(prefix: str) -> Iterator[str]:
    """A new PostgreSQL database named `prefix_<random>`, dropped afterwards; PostgreSQL
    that does not answer fails the test in CI and skips it elsewhere."""
    if not _pg_ok():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable at 127.0.0.1:5432 (required in CI)")
        pytest.skip("PostgreSQL is not reachable")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _pg_execute(PG_ADMIN_URL, f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        _pg_execute(PG_ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh, migrated database for this test run, once per backend."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "amosync.db"
        url = f"sqlite:///{path}"
        upgrade(url)
        yield url
        return
    with _pg_database("amosync_test") as url:
        upgrade(url)
        yield url


@pytest.fixture
def pg_database() -> Iterator[str]:
    """An empty PostgreSQL database of the test's own, not migrated."""
    with _pg_database("amosync_empty") as url:
        yield url


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "admin_token": ADMIN_TOKEN,
        "encryption_key": ENCRYPTION_KEY,
        "worker": "off",
        "amocrm_client_id": "7f8e2a1c-0000-4000-8000-00000000c11d",
        "amocrm_client_secret": "client-secret-" + "s" * 40,
        "amocrm_redirect_uri": "https://amosync.example.test/vidget",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


async def empty_database(services: Services) -> None:
    async with services.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(table.delete())


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    state = build_services(settings)
    await empty_database(state)
    try:
        yield state
    finally:
        await state.aclose()


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """The app over ASGI, with the admin token; no inline worker."""
    app = create_app(services=services, migrate=False, worker=False)
    app.state.services = services
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://amosync.test",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as http:
        yield http


@pytest.fixture
def anon(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The same app without credentials."""
    return httpx.AsyncClient(transport=client._transport, base_url="http://amosync.test")


@pytest.fixture
def captured_logs() -> Iterator[list[str]]:
    """Every log line the service writes during the test, rendered as text."""
    lines: list[str] = []

    def capture(_logger: object, _method: str, event: dict[str, object]) -> str:
        line = repr(event)
        lines.append(line)
        return line

    configure_logging("json")
    processors = list(structlog.get_config()["processors"])
    processors[-1] = capture
    structlog.configure(processors=processors, logger_factory=structlog.ReturnLoggerFactory())
    yield lines
    configure_logging("console")


@pytest.fixture
def artifacts() -> Path:
    path = Path(__file__).parent / "artifacts"
    path.mkdir(exist_ok=True)
    return path
