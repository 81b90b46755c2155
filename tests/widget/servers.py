"""Real HTTP servers on loopback for the widget's browser tests.

`FakeBackend` answers the widget routes of SPEC §3 the way the service does (shapes, status
codes, {"error", "detail"} bodies, CORS for the page's origin) and records every call, so a
test can check what the widget sent. `StandServer` serves the amoCRM stand page and the
built widget's files from another origin, as amoCRM's pages would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ACCOUNT_ID = 30896271
TOKEN = "eyJhbGciOiJIUzI1NiJ9.disposable-token-for-the-widget-test.c2lnbmF0dXJl"
GOOD_KEY = "6x4nk7tq8zbs3yg1fj5ooeoax9xyhdb8sa5mgpie"

# What successive GET /sync/{run_id} calls answer for a run that succeeds.
SUCCESS_STEPS: list[dict[str, Any]] = [
    {"status": "running", "fetched": 250, "synced": 100, "unsynced": 20, "failed": 0},
    {"status": "running", "fetched": 500, "synced": 400, "unsynced": 50, "failed": 0},
    {"status": "done", "fetched": 500, "synced": 440, "unsynced": 60, "failed": 0},
]
FAILURE_STEPS: list[dict[str, Any]] = [
    {"status": "running", "fetched": 250, "synced": 0, "unsynced": 0, "failed": 0},
    {
        "status": "failed",
        "fetched": 250,
        "synced": 0,
        "unsynced": 0,
        "failed": 250,
        "error": "Unisender refused the API key (invalid_api_key)",
    },
]


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    token: str | None
    origin: str | None
    content_type: str | None
    body: Any


@dataclass
class BackendState:
    allowed_origin: str = ""
    connected: bool = False
    steps: list[dict[str, Any]] = field(default_factory=lambda: list(SUCCESS_STEPS))
    calls: list[Call] = field(default_factory=list)
    preflights: int = 0
    runs: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.connected = False
            self.steps = list(SUCCESS_STEPS)
            self.calls.clear()
            self.preflights = 0
            self.runs.clear()

    def calls_to(self, method: str, path: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method and c.path == path]


class _BackendHandler(BaseHTTPRequestHandler):
    state: BackendState

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 -- stdlib name
        pass  # keep test output quiet

    def _cors(self) -> None:
        origin = self.headers.get("Origin")
        if origin and origin == self.state.allowed_origin:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Vary", "Origin")

    def _send(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self._cors()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_OPTIONS(self) -> None:  # noqa: N802 -- http.server's naming
        with self.state.lock:
            self.state.preflights += 1
        self.send_response(204)
        self._cors()
        self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "X-Auth-Token, Content-Type")
        self.send_header("Access-Control-Max-Age", "600")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        call = Call(
            method=method,
            path=url.path,
            query=parse_qs(url.query),
            token=self.headers.get("X-Auth-Token"),
            origin=self.headers.get("Origin"),
            content_type=self.headers.get("Content-Type"),
            body=body,
        )
        with self.state.lock:
            self.state.calls.append(call)
        if call.token != TOKEN:
            self._send(
                401, {"error": "unauthorized", "detail": "X-Auth-Token is missing or invalid"}
            )
            return
        self._route(call)

    def _route(self, call: Call) -> None:
        state = self.state
        if call.method == "GET" and call.path == "/acchasuni":
            account = call.query.get("account_id", [""])[0]
            if account != str(ACCOUNT_ID):
                self._send(403, {"error": "forbidden", "detail": "not your account"})
                return
            self._send(200, {"account_id": ACCOUNT_ID, "connected": state.connected})
        elif call.method == "POST" and call.path == "/vidget/unisender":
            if not isinstance(call.body, dict) or call.body.get("account_id") != ACCOUNT_ID:
                self._send(400, {"error": "bad_request", "detail": "account_id is required"})
            elif call.body.get("unisender_key") != GOOD_KEY:
                self._send(
                    400,
                    {"error": "invalid_unisender_key", "detail": "Unisender: invalid_api_key"},
                )
            else:
                state.connected = True
                self._send(200, {"account_id": ACCOUNT_ID, "connected": True})
        elif call.method == "POST" and call.path == "/sync":
            if not isinstance(call.body, dict) or call.body.get("account_id") != ACCOUNT_ID:
                self._send(400, {"error": "bad_request", "detail": "account_id is required"})
                return
            run_id = f"run-{len(state.runs) + 1}"
            with state.lock:
                state.runs[run_id] = 0
            self._send(202, {"run_id": run_id, "status": "queued"})
        elif call.method == "GET" and call.path.startswith("/sync/"):
            run_id = call.path.removeprefix("/sync/")
            with state.lock:
                if run_id not in state.runs:
                    self._send(404, {"error": "not_found", "detail": "no such sync run"})
                    return
                step = state.steps[min(state.runs[run_id], len(state.steps) - 1)]
                state.runs[run_id] += 1
            progress = {
                "run_id": run_id,
                "error": None,
                "started_at": "2026-11-28T05:00:00Z",
                "finished_at": "2026-11-28T05:00:09Z"
                if step["status"] in ("done", "failed")
                else None,
                **step,
            }
            self._send(200, progress)
        else:
            self._send(404, {"error": "not_found", "detail": f"no route {call.method} {call.path}"})


@contextmanager
def serve(handler: Any) -> Iterator[str]:
    """Run `handler` on a free loopback port in a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def fake_backend() -> Iterator[tuple[str, BackendState]]:
    state = BackendState()
    handler = type("BackendHandler", (_BackendHandler,), {"state": state})
    with serve(handler) as url:
        yield url, state


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


@contextmanager
def stand_server(folder: Path) -> Iterator[str]:
    """Serve `folder` (the stand page, stub.js and widget/) over HTTP."""
    with serve(partial(_QuietFiles, directory=str(folder))) as url:
        yield url
