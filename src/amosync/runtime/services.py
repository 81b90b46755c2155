"""What the process builds once at start-up and hands to endpoints, jobs and the CLI."""

from __future__ import annotations

import asyncio
import gc
import secrets
from dataclasses import dataclass, field

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from amosync.config import Settings
from amosync.db.engine import make_engine, make_sessionmaker
from amosync.runtime.crypto import Cipher
from amosync.upstream.ratelimit import RateLimits

log = structlog.get_logger()


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    cipher: Cipher
    http: httpx.AsyncClient
    limits: RateLimits
    admin_token: str
    # Set when work is queued in this process, so an inline worker wakes at once instead
    # of waiting for its next poll.
    work_ready: asyncio.Event = field(default_factory=asyncio.Event)

    def notify_work(self) -> None:
        self.work_ready.set()

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.engine.dispose()


def build_services(settings: Settings) -> Services:
    # The token in use is resolved before (`amosync.runtime.preflight.prepare`: the setting, or the
    # one generated once and kept). A process built without it (a worker, `amosync sync`)
    # serves no admin routes: it gets a random one that is never shown.
    admin_token = settings.admin_token or secrets.token_hex(24)
    engine = make_engine(settings.database_url)
    return Services(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        cipher=Cipher(settings.resolve_encryption_key()),
        http=httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=10.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        ),
        limits=RateLimits(),
        admin_token=admin_token,
    )


def freeze_startup_heap() -> None:
    """Keep everything built so far out of the garbage collector's full passes.

    For a long-running process, once started. A full pass walks the whole heap (imported
    modules, SQLAlchemy's and pydantic's machinery: 100-160 ms on a slow machine) while
    every task on the event loop waits: request latency, and rate-limited amoCRM calls that
    leave late and bunch up behind the pause in amoCRM's one-second window.
    """
    gc.collect()
    gc.freeze()
