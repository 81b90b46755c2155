"""The whole stack for end-to-end tests: the sandbox and the service, both over real HTTP.

`Stack` starts the bundled amoCRM/Unisender sandbox on a loopback port, points the service's
settings at it, serves the service (with or without its inline worker) on another port, and
offers the steps a test needs: install an account through the real `GET /vidget` flow,
connect a Unisender key through `POST /vidget/unisender`, wait for the queue to settle.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import func, select, update

from amosync.app import create_app
from amosync.config import Settings
from amosync.db.engine import transaction
from amosync.db.models import Account, Job, utcnow
from amosync.http.disposable import issue_disposable_token
from amosync.runtime.services import Services, build_services
from amosync.sandbox import Sandbox, serve
from amosync.worker.runner import Worker
from tests.conftest import ADMIN_TOKEN, empty_database, make_settings
from tests.servers import free_port, serving

ACCOUNT_ID = 30896271
SUBDOMAIN = "acme"
UNISENDER_KEY = "sandbox-unisender-key-0001"


@dataclass
class Stack:
    sandbox: Sandbox
    sandbox_url: str
    settings: Settings
    services: Services
    url: str
    http: httpx.AsyncClient  # the service, with the admin token
    app: Any = None
    _serving: AsyncExitStack | None = None

    async def stop_service(self) -> None:
        """Take the service's HTTP server down (the database and sandbox stay)."""
        assert self._serving is not None
        await self._serving.aclose()
        self._serving = None

    async def start_service(self) -> None:
        """Serve the same app on the same port again."""
        assert self._serving is None
        self._serving = AsyncExitStack()
        port = int(self.url.rsplit(":", 1)[1])
        await self._serving.enter_async_context(serving(self.app, port=port))

    def widget_headers(self, account_id: int = ACCOUNT_ID) -> dict[str, str]:
        assert self.settings.amocrm_client_secret
        assert self.settings.token_audience
        token = issue_disposable_token(
            secret=self.settings.amocrm_client_secret,
            audience=self.settings.token_audience,
            account_id=account_id,
        )
        return {"X-Auth-Token": token}

    def members(self, key: str = UNISENDER_KEY) -> set[str]:
        """The addresses in the key's one list, lower-cased."""
        lists = self.sandbox.unisender.lists(key)
        assert len(lists) == 1, lists
        return {m.lower() for m in self.sandbox.unisender.list_members(key, lists[0]["id"])}

    async def store_settings(self, settings: dict[str, Any]) -> None:
        """Put the account's settings in its row as they are: a state the API's checks and
        the syncs they start would not leave."""
        async with transaction(self.services.sessions) as session:
            await session.execute(
                update(Account).where(Account.id == ACCOUNT_ID).values(settings=settings)
            )

    async def view(self, kind: str, *, limit: int = 1000) -> dict[int, dict[str, Any]]:
        """The account's contacts in the synced (`sync`) or unsynced (`unsync`) view by
        amoCRM id, every page read `limit` at a time."""
        rows: dict[int, dict[str, Any]] = {}
        cursor = None
        while True:
            params: dict[str, int | str] = {"account_id": ACCOUNT_ID, "limit": limit}
            if cursor:
                params["cursor"] = cursor
            response = await self.http.get(f"/accounts/{kind}", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            rows.update({item["amocrm_id"]: item for item in page["items"]})
            cursor = page["next_cursor"]
            if not cursor:
                return rows

    async def count(self, model: type, *where: object) -> int:
        """How many rows of `model` match `where`."""
        async with self.services.sessions() as session:
            query = select(func.count()).select_from(model).where(*where)  # type: ignore[arg-type]
            return int(await session.scalar(query) or 0)

    async def install(
        self, account_id: int = ACCOUNT_ID, subdomain: str = SUBDOMAIN, name: str = "Acme"
    ) -> None:
        """amoCRM's install call, then wait until the install job is done."""
        self.sandbox.amocrm.add_account(account_id=account_id, subdomain=subdomain, name=name)
        assert self.settings.amocrm_client_id
        code = self.sandbox.amocrm.issue_code(account_id, self.settings.amocrm_client_id)
        response = await self.http.get(
            "/vidget",
            params={
                "code": code,
                "referer": f"{subdomain}.amocrm.ru",
                "client_id": self.settings.amocrm_client_id,
                "from_widget": "1",
                "state": "x",
            },
        )
        assert response.status_code == 200, response.text
        await self.settle()

    async def connect_unisender(
        self, account_id: int = ACCOUNT_ID, key: str = UNISENDER_KEY
    ) -> dict[str, Any]:
        self.sandbox.unisender.add_key(key)
        response = await self.http.post(
            "/vidget/unisender",
            data={"account_id": str(account_id), "unisender_key": key},
            headers=self.widget_headers(account_id),
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def connect(self, *contacts: tuple[str, list[str]]) -> list[dict[str, Any]]:
        """Install the account, add these contacts (a name, its addresses) in amoCRM,
        connect the Unisender key and let the first sync finish; returns the contacts as
        amoCRM holds them."""
        await self.install()
        added = [
            self.sandbox.amocrm.add_contact(ACCOUNT_ID, name=name, emails=emails)
            for name, emails in contacts
        ]
        await self.connect_unisender()
        await self.settle()
        return added

    async def deliver_webhooks(self) -> None:
        """Wait for the sandbox's webhook deliveries, then for the queue."""
        await self.sandbox.amocrm.flush_webhooks()
        await self.settle()

    async def make_due(self, kind: str) -> int:
        """Make the pending jobs of `kind` due now (a retry's backoff, the periodic pass's
        interval: too long to wait for); returns how many there are."""
        async with transaction(self.services.sessions) as session:
            result = await session.execute(
                update(Job)
                .where(Job.kind == kind, Job.status == "pending")
                .values(run_after=utcnow())
            )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def reconcile_now(self) -> None:
        """Make the periodic reconciliation pass due now and run it, after the queue."""
        assert await self.make_due("reconcile") == 1
        await self.settle()
        # settle() leaves the (due) pass alone; run it now.
        await Worker(self.services, concurrency=1).drain(budget=20)

    async def settle(self, timeout: float = 30.0) -> None:
        """Run the queue until nothing but the periodic reconciliation is due."""
        deadline = time.monotonic() + timeout
        worker = Worker(self.services, concurrency=2)
        while time.monotonic() < deadline:
            await worker.drain(budget=max(0.1, deadline - time.monotonic()))
            async with self.services.sessions() as session:
                due = await session.scalar(
                    select(func.count()).where(
                        Job.status == "pending", Job.run_after <= utcnow(), Job.kind != "reconcile"
                    )
                )
            if not due:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError("the queue did not settle")


@asynccontextmanager
async def stack(database_url: str, **overrides: Any) -> AsyncIterator[Stack]:
    sandbox = Sandbox()
    async with AsyncExitStack() as stack_:
        sandbox_url = await stack_.enter_async_context(serve(sandbox, host="127.0.0.1", port=0))
        port = free_port()
        settings = make_settings(
            database_url,
            amocrm_base_url=sandbox_url,
            unisender_base_url=f"{sandbox_url}/ru/api",
            amocrm_redirect_uri=f"http://127.0.0.1:{port}/vidget",
            **overrides,
        )
        sandbox.amocrm.add_integration(
            settings.amocrm_client_id, settings.amocrm_client_secret, settings.amocrm_redirect_uri
        )
        services = build_services(settings)
        stack_.push_async_callback(services.aclose)
        await empty_database(services)
        app = create_app(services=services, migrate=False, worker=False)
        app.state.services = services
        # Its own exit stack, so a test can take the service down and bring it back.
        serving_ = AsyncExitStack()
        url = await serving_.enter_async_context(serving(app, port=port))
        http = await stack_.enter_async_context(
            httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
            )
        )
        built = Stack(sandbox, sandbox_url, settings, services, url, http, app, serving_)

        async def stop_serving() -> None:
            if built._serving is not None:
                await built._serving.aclose()

        stack_.push_async_callback(stop_serving)
        yield built
