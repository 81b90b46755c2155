"""Unisender's HTTP surface: `{GET|POST} /{lang}/api/{method}?format=json`.

Arguments come from the query string and the form body alike (PHP-style indexed arrays).
Each call waits `latency`, may hit an injected fault (an HTTP 5xx, or an error code such as
`retry_later` with HTTP 200), is checked for its API key, then against the key's calls per
minute (`api_call_limit_exceeded_for_api_key`, HTTP 200, as Unisender answers it).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from amosync.sandbox.calls import Call
from amosync.sandbox.forms import parse_form, php_params
from amosync.sandbox.unisender import UnisenderError, UnisenderHTTPError, UnisenderSimulator

_MESSAGES = {
    "retry_later": "Temporary failure, please retry later",
    "api_call_limit_exceeded_for_api_key": "API call limit exceeded for this API key",
}


def routes(sim: UnisenderSimulator) -> list[Route]:
    async def endpoint(request: Request) -> Response:
        return await _call(sim, request)

    return [Route("/{lang:str}/api/{method:str}", endpoint, methods=["GET", "POST"])]


async def _call(sim: UnisenderSimulator, request: Request) -> Response:
    if sim.latency:
        await asyncio.sleep(sim.latency)
    method = request.path_params["method"]
    code: str | None = None
    fault = sim.faults.pick(method)
    if fault is not None and fault.code is None:
        response = _bare(fault.status)
    else:
        try:
            if fault is not None:
                assert fault.code is not None
                raise UnisenderError(fault.code, _MESSAGES.get(fault.code, "Injected fault"))
            result = await _run(sim, request, method)
            answer: dict[str, Any] = {"result": result}
            warnings = sim.answer_warnings(method, result)
            if warnings:
                answer["warnings"] = warnings
            response = Response(orjson.dumps(answer), 200, media_type="application/json")
        except UnisenderError as exc:
            code = exc.code
            response = Response(orjson.dumps(exc.as_json()), 200, media_type="application/json")
        except UnisenderHTTPError as exc:
            response = _bare(exc.status)
    sim.calls.record(
        Call(
            "unisender",
            request.method,
            request.url.path,
            response.status_code,
            time.time(),
            None,
            code,
        )
    )
    return response


def _bare(status: int) -> Response:
    """An HTTP error page, as a proxy in front of the API answers."""
    return Response(f"<html><body><h1>{status}</h1></body></html>", status, media_type="text/html")


# Bodies larger than this are parsed in a thread (an importContacts of 500 rows is ~47 KB).
LARGE_BODY = 16 * 1024


def _params(query: str, raw: bytes) -> dict[str, Any]:
    return php_params(parse_form(query) + parse_form(raw.decode("utf-8", "replace")))


async def _run(sim: UnisenderSimulator, request: Request, method: str) -> object:
    raw = await request.body()
    if len(raw) > LARGE_BODY:
        # Parsing a big import takes tens of milliseconds. In one go it would hold the event
        # loop that also serves the amoCRM simulator, whose requests would then be counted
        # late and bunch up in its rate-limit window: 429s real amoCRM, on a host of its
        # own, would not give. In a thread it gives way to the loop every few milliseconds.
        params = await asyncio.to_thread(_params, request.url.query, raw)
    else:
        params = _params(request.url.query, raw)
    key = str(params.get("api_key") or "")
    account = sim.keys.get(key)
    if account is None:
        raise UnisenderError("invalid_api_key", "Invalid API key")
    if not account.window.admit(sim.rate_limit_rpm):
        sim.rate_limited += 1
        raise UnisenderError(
            "api_call_limit_exceeded_for_api_key", _MESSAGES["api_call_limit_exceeded_for_api_key"]
        )
    return sim.call(key, method, params)
