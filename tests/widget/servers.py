"""The real service for the widget's browser tests, and the amoCRM page the widget runs on.

`running_service()` starts `amosync sandbox` and `amosync serve` (inline worker, a SQLite
database of its own) as processes on loopback ports, as an operator would run them, and
drives the sandbox through its `/_sandbox` control routes: the widget talks to the real
service over real HTTP, and the service to the sandbox's amoCRM and Unisender.

`route_stand()` serves the stand page (harness/) and the built widget at
`https://<subdomain>.amocrm.ru/` inside the browser (Playwright routing, no server and no
certificate): the page has an amoCRM account's origin, which is what the service's CORS
accepts, and the widget's calls cross origins to the service as they do in amoCRM.
"""

from __future__ import annotations

import mimetypes
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from amosync.config import Settings
from amosync.http.disposable import issue_disposable_token
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.servers import free_port, stop
from tests.worker.processes import env_for

SUBDOMAIN = "acme"
STAND_ORIGIN = f"https://{SUBDOMAIN}.amocrm.ru"


@dataclass
class Service:
    url: str
    sandbox_url: str
    settings: Settings
    http: httpx.Client  # the service, with the admin token
    control: httpx.Client  # the sandbox's /_sandbox routes

    def token(self, account_id: int) -> str:
        """An amoCRM disposable token for the widget (X-Auth-Token)."""
        assert self.settings.amocrm_client_secret
        assert self.settings.token_audience
        return issue_disposable_token(
            secret=self.settings.amocrm_client_secret,
            audience=self.settings.token_audience,
            account_id=account_id,
            ttl=1800,
        )

    def sandbox(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.control.request(method, path, **kwargs)
        assert response.status_code < 400, f"{method} {path}: {response.text}"
        return response.json() if response.content else None

    def add_account(self, account_id: int, contacts: list[tuple[str, list[str]]]) -> None:
        """The account at amoCRM (not installed on the service yet), with its contacts."""
        self.sandbox(
            "POST",
            "/amocrm/accounts",
            json={"account_id": account_id, "subdomain": SUBDOMAIN, "name": "Acme"},
        )
        for name, emails in contacts:
            self.sandbox(
                "POST",
                f"/amocrm/accounts/{account_id}/contacts",
                json={"name": name, "emails": emails},
            )

    def install(self, account_id: int) -> None:
        """amoCRM's install call (GET /vidget); its code exchange runs as a job."""
        code = self.sandbox(
            "POST",
            f"/amocrm/accounts/{account_id}/codes",
            json={"client_id": self.settings.amocrm_client_id},
        )["code"]
        response = self.http.get(
            "/vidget",
            params={
                "code": code,
                "referer": f"{SUBDOMAIN}.amocrm.ru",
                "client_id": self.settings.amocrm_client_id,
                "from_widget": "1",
            },
        )
        assert response.status_code == 200, response.text

    def wait_installed(self, account_id: int, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.http.get(f"/accounts/{account_id}")
            if response.status_code == 200:
                return dict(response.json())
            time.sleep(0.1)
        raise AssertionError(f"account {account_id} was never installed")

    def add_key(self, key: str) -> None:
        self.sandbox("POST", "/unisender/keys", json={"key": key})

    def remove_key(self, key: str) -> None:
        self.sandbox("DELETE", "/unisender/keys", params={"key": key})

    def connect(self, account_id: int, key: str) -> int:
        """The widget's key call, made here; returns the first sync's run id."""
        response = self.http.post(
            "/vidget/unisender",
            json={"account_id": account_id, "unisender_key": key},
            headers={"X-Auth-Token": self.token(account_id), "Authorization": ""},
        )
        assert response.status_code == 200, response.text
        return int(response.json()["run_id"])

    def wait_run(self, run_id: int, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.http.get(f"/sync/{run_id}").json()
            if run["status"] in ("done", "failed"):
                return dict(run)
            time.sleep(0.1)
        raise AssertionError(f"sync run {run_id} never finished")


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"{url} never answered:\n{log.read_text(errors='replace')}"
                ) from None
            time.sleep(0.1)


@contextmanager
def _process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "amosync.cli.main", *args],
            env=env,
            cwd=log.parent,  # no stray .env from the working directory
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            stop(process, timeout=10)


@contextmanager
def running_service(folder: Path) -> Iterator[Service]:
    """`amosync sandbox` and `amosync serve` against it, both running until the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    sandbox_port, port = free_port(), free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    settings = make_settings(
        f"sqlite:///{folder / 'amosync.db'}",
        amocrm_base_url=sandbox_url,
        unisender_base_url=f"{sandbox_url}/ru/api",
        amocrm_redirect_uri=f"http://127.0.0.1:{port}/vidget",
        public_url=f"http://127.0.0.1:{port}",
        worker="inline",
    )
    env = env_for(settings)
    with ExitStack() as stack:
        sandbox = stack.enter_context(
            _process(
                ["sandbox", "--port", str(sandbox_port), "--no-seed"], env, folder / "sandbox.log"
            )
        )
        _wait_http(f"{sandbox_url}/_sandbox/health", sandbox, folder / "sandbox.log")
        control = stack.enter_context(httpx.Client(base_url=f"{sandbox_url}/_sandbox", timeout=10))
        response = control.post(
            "/amocrm/integrations",
            json={
                "client_id": settings.amocrm_client_id,
                "client_secret": settings.amocrm_client_secret,
                "redirect_uri": settings.amocrm_redirect_uri,
            },
        )
        assert response.status_code < 400, response.text
        service = stack.enter_context(
            _process(["serve", "--port", str(port)], env, folder / "service.log")
        )
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/ready", service, folder / "service.log")
        http = stack.enter_context(
            httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
            )
        )
        yield Service(url, sandbox_url, settings, http, control)


def route_stand(context: Any, folder: Path, origin: str = STAND_ORIGIN) -> None:
    """Serve `folder` (stand page, stub.js, widget/) at `origin` inside the browser."""

    def fulfil(route: Any) -> None:
        path = urlsplit(route.request.url).path.lstrip("/") or "index.html"
        file = (folder / path).resolve()
        if not file.is_relative_to(folder.resolve()) or not file.is_file():
            route.fulfill(status=404, body="not found")
            return
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("application/json", "application/javascript"):
            kind += "; charset=utf-8"
        route.fulfill(
            status=200,
            body=file.read_bytes(),
            headers={"Content-Type": kind, "Cache-Control": "no-store"},
        )

    context.route(f"{origin}/**", fulfil)
