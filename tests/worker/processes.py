"""Helpers for tests that run `amosync serve` / `amosync worker` as real processes.

`Process` starts the CLI with `sys.executable -m amosync.cli.main …`, settings passed as
AMOSYNC_* variables (from a `Settings`), output kept in a file for the failure message.
`UnisenderTap` sits in front of the sandbox's Unisender over real HTTP: it records the time
window of every call per API key and can hold calls of a method until the test lets them go.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx

from amosync.config import Settings
from amosync.sandbox import Sandbox, create_app

SETTINGS_ENV = (
    "database_url",
    "amocrm_client_id",
    "amocrm_client_secret",
    "amocrm_redirect_uri",
    "amocrm_base_url",
    "unisender_base_url",
    "unisender_rpm",
    "amocrm_rps",
    "public_url",
    "admin_token",
    "encryption_key",
    "worker",
)


def env_for(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment a CLI process needs to run with `settings` (plus `overrides`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOSYNC_")}
    for name in SETTINGS_ENV:
        value = getattr(settings, name)
        if value is not None:
            env[f"AMOSYNC_{name.upper()}"] = str(value)
    env["AMOSYNC_LOG_FORMAT"] = "json"
    env.update({f"AMOSYNC_{k.upper()}": v for k, v in overrides.items()})
    return env


class Process:
    """`amosync <args>` in a process of its own; its output goes to `log`."""

    def __init__(self, args: list[str], env: Mapping[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amosync.cli.main", *args],
            env=dict(env),
            # No stray .env from the developer's working directory.
            cwd=log.parent,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    async def wait_for_output(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if not self.alive():
                raise AssertionError(f"process exited ({self.proc.returncode}):\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in the output:\n{self.output()}")
            await asyncio.sleep(0.05)

    async def wait_http(self, url: str, timeout: float = 20.0) -> None:
        """Until `url` answers (the service is up)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1) as http:
            while True:
                try:
                    await http.get(url)
                    return
                except httpx.TransportError:
                    if not self.alive():
                        raise AssertionError(
                            f"process exited ({self.proc.returncode}):\n{self.output()}"
                        ) from None
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{url} never answered:\n{self.output()}") from None
                    await asyncio.sleep(0.05)

    async def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None if still running after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.proc.poll()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def close(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._out.close()


@dataclass(frozen=True)
class Window:
    key: str
    method: str
    start: float
    end: float


@dataclass
class UnisenderTap:
    """An ASGI app in front of the sandbox's Unisender: logs call windows, can hold calls."""

    sandbox: Sandbox
    windows: list[Window] = field(default_factory=list)
    # Calls of these methods wait until `release()`.
    hold: set[str] = field(default_factory=set)
    held: int = 0
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._inner = create_app(self.sandbox, control_routes=False)

    def release(self) -> None:
        self._released.set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._inner(scope, receive, send)
            return
        start = time.monotonic()
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        method = scope["path"].rsplit("/", 1)[-1]
        key = dict(parse_qsl(body.decode(errors="replace"))).get("api_key", "")
        if method in self.hold:
            self.held += 1
            await self._released.wait()
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self._inner(scope, replay, send)
        self.windows.append(Window(key, method, start, time.monotonic()))

    def overlaps(self) -> list[tuple[Window, Window]]:
        """Pairs of calls with the same key that were in flight at the same time."""
        found = []
        by_key: dict[str, list[Window]] = {}
        for window in self.windows:
            by_key.setdefault(window.key, []).append(window)
        for calls in by_key.values():
            calls.sort(key=lambda w: w.start)
            latest = calls[0]
            for window in calls[1:]:
                if window.start < latest.end:
                    found.append((latest, window))
                if window.end > latest.end:
                    latest = window
        return found
