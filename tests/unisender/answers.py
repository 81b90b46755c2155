"""Unisender's answers as its documentation shows them (tests/fixtures/unisender/), served
byte for byte over httpx.MockTransport: the sandbox produces the same shapes, but not these
exact answers."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx

from amosync.unisender.client import UnisenderClient
from amosync.upstream.ratelimit import make_limiter
from tests.transport import answered_by, form_of

FIXTURES = Path(__file__).parent.parent / "fixtures" / "unisender"
BASE = "https://api.unisender.com/ru/api"
JSON = {"content-type": "application/json"}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def answering(handler: Callable[[httpx.Request], bytes]) -> tuple[UnisenderClient, list[list[str]]]:
    """A client whose every call gets `handler(request)` as an HTTP 200 JSON body; the
    list collects each importContacts call's rows (their addresses)."""
    calls: list[list[str]] = []

    def respond(request: httpx.Request) -> httpx.Response:
        form = form_of(request)
        calls.append([v for k, v in sorted(form.items(), key=_row_order) if k.endswith("][0]")])
        return httpx.Response(200, content=handler(request), headers=JSON)

    return UnisenderClient(BASE, "key", make_limiter(1000), http=answered_by(respond)), calls


def _row_order(item: tuple[str, str]) -> tuple[int, str]:
    found = re.match(r"data\[(\d+)\]", item[0])
    return (int(found.group(1)) if found else -1, item[0])
