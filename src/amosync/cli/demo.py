"""`amosync demo`: the sandbox, the service, and a demo account installed the real way.

Everything goes through the same doors a real amoCRM account uses: amoCRM's install call to
`GET /vidget`, the widget's `POST /vidget/unisender` with a disposable token, the full sync
on the worker, then webhooks the sandbox posts as its contacts change.

The demo's data is its own: a SQLite database in a temporary directory, removed when the
demo stops. Its account and integration point at a sandbox that lives only as long as the
demo, so nothing of it may outlive the demo in the user's database (`./amosync.db` or
`AMOSYNC_DATABASE_URL`), where a later `amosync serve` would call the real amoCRM for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import socket
import tempfile
import uuid
from pathlib import Path

import httpx
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from amosync.app import create_app
from amosync.config import Settings
from amosync.db.models import RunStatus
from amosync.http.disposable import issue_disposable_token
from amosync.runtime.preflight import new_admin_token, prepare
from amosync.sandbox import Sandbox, serve

DEMO_ACCOUNT = 30896271
DEMO_SUBDOMAIN = "demo"
DEMO_KEY = "demo-unisender-key"


async def run_demo(
    base: Settings,
    *,
    host: str,
    port: int,
    sandbox_port: int,
    contacts: int,
    listener: socket.socket | None = None,
) -> None:
    """Run the demo until interrupted; `listener` is the service's socket, already bound."""
    with tempfile.TemporaryDirectory(prefix="amosync-demo-") as folder:
        await _run(
            base,
            Path(folder),
            host=host,
            port=port,
            sandbox_port=sandbox_port,
            contacts=contacts,
            listener=listener,
        )


async def _run(
    base: Settings,
    folder: Path,
    *,
    host: str,
    port: int,
    sandbox_port: int,
    contacts: int,
    listener: socket.socket | None,
) -> None:
    console = Console()
    sandbox = Sandbox()
    # The simulators answer on loopback only, whatever interface the service listens on.
    async with serve(sandbox, host="127.0.0.1", port=sandbox_port) as sandbox_url:
        client_id = str(uuid.uuid4())
        client_secret = secrets.token_urlsafe(32)
        url = f"http://{host}:{port}"
        settings = base.model_copy(
            update={
                "amocrm_client_id": client_id,
                "amocrm_client_secret": client_secret,
                "amocrm_redirect_uri": f"{url}/vidget",
                "amocrm_base_url": sandbox_url,
                "unisender_base_url": f"{sandbox_url}/ru/api",
                "public_url": url,
                "database_url": f"sqlite:///{folder / 'demo.db'}",
                "encryption_key": None,  # a key file of its own, beside its database
                "admin_token": base.admin_token or new_admin_token(),
                "worker": "inline",
            }
        )
        settings = await prepare(settings)
        assert settings.admin_token
        sandbox.amocrm.add_integration(client_id, client_secret, settings.amocrm_redirect_uri)
        sandbox.amocrm.add_account(
            account_id=DEMO_ACCOUNT, subdomain=DEMO_SUBDOMAIN, name="Demo Company"
        )
        generated = sandbox.amocrm.generate_contacts(DEMO_ACCOUNT, contacts, seed=2026)
        sandbox.unisender.add_key(DEMO_KEY)
        console.print(f"sandbox (amoCRM + Unisender) on {sandbox_url}: {contacts} contacts")
        console.print(f"demo data in {folder} (removed when the demo stops)")

        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings, migrate=False),
                host=host,
                port=port,
                log_config=None,
                access_log=False,
            )
        )
        serving = asyncio.create_task(server.serve([listener] if listener else None))
        while not server.started:
            if serving.done():
                serving.result()
                return
            await asyncio.sleep(0.05)
        admin = {"Authorization": f"Bearer {settings.admin_token}"}
        async with httpx.AsyncClient(base_url=url, timeout=30, headers=admin) as http:
            await _install(http, sandbox, settings, console)
            run_id = await _connect(http, settings, console)
            await _progress(http, run_id, console)
        console.print()
        console.print(f"[bold]dashboard[/bold]: {url}/")
        console.print(f"[bold]admin token[/bold]: {settings.admin_token}")
        console.print(f"API docs: {url}/docs — contacts change every few seconds (webhooks)")
        changer = asyncio.create_task(_keep_changing(sandbox, generated))
        try:
            await serving
        finally:
            changer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await changer


async def _install(
    http: httpx.AsyncClient, sandbox: Sandbox, settings: Settings, console: Console
) -> None:
    assert settings.amocrm_client_id
    code = sandbox.amocrm.issue_code(DEMO_ACCOUNT, settings.amocrm_client_id)
    response = await http.get(
        "/vidget",
        params={
            "code": code,
            "referer": f"{DEMO_SUBDOMAIN}.amocrm.ru",
            "client_id": settings.amocrm_client_id,
            "from_widget": "1",
        },
    )
    response.raise_for_status()
    for _ in range(300):
        integrations = await http.get(f"/accounts/integrations/{DEMO_ACCOUNT}")
        if integrations.status_code == 200 and any(
            item["webhook_registered"] for item in integrations.json()["items"]
        ):
            console.print("installed through GET /vidget: tokens stored, webhooks registered")
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the demo install did not finish; see the log above")


async def _connect(http: httpx.AsyncClient, settings: Settings, console: Console) -> int:
    assert settings.amocrm_client_secret
    assert settings.token_audience
    token = issue_disposable_token(
        secret=settings.amocrm_client_secret,
        audience=settings.token_audience,
        account_id=DEMO_ACCOUNT,
    )
    response = await http.post(
        "/vidget/unisender",
        json={"account_id": DEMO_ACCOUNT, "unisender_key": DEMO_KEY},
        headers={"Authorization": "", "X-Auth-Token": token},
    )
    response.raise_for_status()
    console.print(f"Unisender connected (list {response.json()['list_id']}); full sync started")
    return int(response.json()["run_id"])


async def _progress(http: httpx.AsyncClient, run_id: int, console: Console) -> None:
    columns = (
        TextColumn("[bold]full sync"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("sync", total=None, state="queued")
        while True:
            run = (await http.get(f"/sync/{run_id}")).json()
            done = run["status"] in (RunStatus.DONE, RunStatus.FAILED)
            progress.update(
                task,
                completed=run["fetched"],
                total=run["fetched"] if done else None,
                state=f"{run['status']}: {run['synced']} synced, {run['unsynced']} unsynced",
            )
            if done:
                return
            await asyncio.sleep(0.3)


async def _keep_changing(sandbox: Sandbox, generated: range) -> None:
    """Edit a random demo contact every few seconds: the sandbox posts real webhooks."""
    rng = random.Random(7)
    n = 0
    while True:
        await asyncio.sleep(4)
        n += 1
        sandbox.amocrm.add_contact(
            DEMO_ACCOUNT, name=f"Live contact {n}", emails=[f"live{n}@demo.example"]
        )
        if generated and rng.random() < 0.3:
            sandbox.amocrm.update_contact(
                DEMO_ACCOUNT, rng.choice(generated), emails=[f"changed{n}@demo.example"]
            )
