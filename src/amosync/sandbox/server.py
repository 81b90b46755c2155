"""Serving the sandbox: the ASGI app, `serve()` in a running loop, and `main()` for the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
import uvicorn
from starlette.applications import Starlette

from amosync.config import Settings
from amosync.sandbox import amocrm_http, control_http, unisender_http
from amosync.sandbox.simulators import DEMO_ACCOUNT_ID, Sandbox

log = structlog.get_logger()


def create_app(sandbox: Sandbox, *, control_routes: bool = True) -> Starlette:
    """amoCRM at the root, Unisender under `/{lang}/api/`, controls under `/_sandbox/`."""
    routes = [*amocrm_http.routes(sandbox.amocrm), *unisender_http.routes(sandbox.unisender)]
    if control_routes:
        routes += control_http.routes(sandbox)
    return Starlette(routes=routes)


class _Server(uvicorn.Server):
    """uvicorn notices `should_exit` within 0.1 s; tests start and stop a sandbox each, so
    this one looks ten times as often (and still runs uvicorn's once-a-second upkeep)."""

    async def main_loop(self) -> None:
        ticks = 0
        while not self.should_exit:
            ticks += 1
            await asyncio.sleep(0.01)
            if ticks % 10 == 0 and await self.on_tick(ticks // 10):
                return


@asynccontextmanager
async def serve(
    sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0, *, control_routes: bool = True
) -> AsyncIterator[str]:
    """Serve over real HTTP inside the running event loop; yields the base URL.

    `port=0` picks a free port. Use `{base}` as AMOSYNC_AMOCRM_BASE_URL and `{base}/ru/api`
    as AMOSYNC_UNISENDER_BASE_URL.
    """
    config = uvicorn.Config(
        create_app(sandbox, control_routes=control_routes),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the sandbox server stopped before it started")
        await asyncio.sleep(0.005)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        await task
        await sandbox.aclose()


def main(host: str = "127.0.0.1", port: int = 9000, *, demo: bool = True) -> None:
    """Run the sandbox until interrupted (the `amosync sandbox` command).

    With `demo`, seeds `Sandbox.seed_demo()` and, when AMOSYNC_AMOCRM_CLIENT_ID, _SECRET and
    _REDIRECT_URI are set, registers that integration, so a service using the same settings
    can be installed against it right away. Everything else is driven over `/_sandbox/...`.
    """
    sandbox = Sandbox()
    if demo:
        sandbox.seed_demo()
        settings = Settings()
        if (
            settings.amocrm_client_id
            and settings.amocrm_client_secret
            and settings.amocrm_redirect_uri
        ):
            sandbox.amocrm.add_integration(
                settings.amocrm_client_id,
                settings.amocrm_client_secret,
                settings.amocrm_redirect_uri,
            )
    base = f"http://{host}:{port}"
    log.info(
        "sandbox.started",
        amocrm_base_url=base,
        unisender_base_url=f"{base}/ru/api",
        control_url=f"{base}/_sandbox",
        demo_account_id=DEMO_ACCOUNT_ID if demo else None,
    )
    uvicorn.run(
        create_app(sandbox), host=host, port=port, log_config=None, access_log=False, lifespan="off"
    )
