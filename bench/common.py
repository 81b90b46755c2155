"""Shared by the benchmarks: a sandbox in its own process, fresh databases, an installed account."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from amosync.accounts import repository
from amosync.accounts.install import accept_install
from amosync.accounts.unisender import connect
from amosync.app import job_handlers
from amosync.config import Settings
from amosync.db.engine import transaction
from amosync.db.migrate import upgrade_async
from amosync.runtime.services import Services, build_services
from amosync.sandbox import RemoteSandbox
from amosync.worker.runner import Worker

PG_ADMIN = os.environ.get("AMOSYNC_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ACCOUNT_ID = 30896271
KEY = "bench-unisender-key"
CLIENT_ID = str(uuid.UUID(int=1))
SECRET = "bench-client-secret-" + "x" * 24


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def sandbox_process() -> Iterator[str]:
    """`amosync sandbox` in a process of its own, so it does not share our event loop."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "amosync.cli.main", "sandbox", "--port", str(port), "--no-seed"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{url}/_sandbox/calls", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the sandbox did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass(frozen=True)
class Sandboxes:
    """The base URLs of the amoCRM and the Unisender sandbox."""

    amocrm: str
    unisender: str


@contextmanager
def sandbox_processes() -> Iterator[Sandboxes]:
    """amoCRM and Unisender each in a sandbox process of its own, as they are two hosts.

    In one process, parsing a large importContacts held the event loop that also stamps
    amoCRM's calls for its rate limit, so they bunched up in its one-second window and drew
    429s the real amoCRM would not give.
    """
    with sandbox_process() as amocrm, sandbox_process() as unisender:
        yield Sandboxes(amocrm, unisender)


@asynccontextmanager
async def database(kind: str) -> AsyncIterator[str]:
    """A fresh, migrated database: a temporary SQLite file or a new PostgreSQL database."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            await upgrade_async(url)
            yield url
        return
    name = f"amosync_bench_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(
        PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://", 1), isolation_level="AUTOCOMMIT"
    )
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        await upgrade_async(url)
        yield url
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def settings_for(database_url: str, sandboxes: Sandboxes, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "amocrm_client_id": CLIENT_ID,
        "amocrm_client_secret": SECRET,
        "amocrm_redirect_uri": "http://127.0.0.1:1/vidget",
        "amocrm_base_url": sandboxes.amocrm,
        "unisender_base_url": f"{sandboxes.unisender}/ru/api",
        "admin_token": "bench-admin",
        "encryption_key": Fernet.generate_key().decode(),
        "worker": "off",
        "log_format": "json",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def installed_account(
    settings: Settings,
    amocrm: RemoteSandbox,
    unisender: RemoteSandbox,
    contacts: int,
    **generation: Any,
) -> Services:
    """An account installed through the real install job and connected to Unisender;
    `generation`: more of the sandbox's `generate_contacts` parameters (its deals)."""
    await amocrm.amocrm.add_integration(CLIENT_ID, SECRET, settings.amocrm_redirect_uri or "")
    await amocrm.amocrm.add_account(account_id=ACCOUNT_ID, subdomain="bench", name="Bench")
    await amocrm.amocrm.generate_contacts(ACCOUNT_ID, contacts, seed=1, **generation)
    await unisender.unisender.add_key(KEY)
    code = await amocrm.amocrm.issue_code(ACCOUNT_ID, CLIENT_ID)
    services = build_services(settings)
    async with transaction(services.sessions) as session:
        await accept_install(
            services, session, code=code, referer="bench.amocrm.ru", client_id=CLIENT_ID
        )
    await Worker(services, concurrency=1, handlers=job_handlers()).drain(30)
    async with transaction(services.sessions) as session:
        account = await repository.get(session, ACCOUNT_ID, for_update=True)
        assert account is not None, "the install job did not store the account"
        await connect(services, session, account, KEY, None)
    return services


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def settings_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The AMOSYNC_* environment that makes a CLI process use `settings` (plus `overrides`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOSYNC_")}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"AMOSYNC_{name.upper()}"] = str(value)
    env.update({f"AMOSYNC_{k.upper()}": v for k, v in overrides.items()})
    return env


@contextmanager
def cli_process(
    args: list[str], env: dict[str, str], *, ready_url: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`amosync <args>` in a process of its own; with `ready_url`, waits until it answers."""
    with tempfile.TemporaryDirectory() as folder:
        # A folder of its own: no stray .env is read.
        proc = subprocess.Popen(
            [sys.executable, "-m", "amosync.cli.main", *args],
            env=env,
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            if ready_url is not None:
                wait_http(ready_url, proc)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")
