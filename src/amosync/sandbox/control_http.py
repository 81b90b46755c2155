"""`/_sandbox/...`: the sandbox's controls (`controls`) served over HTTP, JSON in and out.

Drives a sandbox that runs in another process (benchmarks, the demo); `remote.RemoteSandbox`
is the Python side of the same routes.
"""

from __future__ import annotations

import inspect
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from amosync.sandbox.controls import ALL, Control
from amosync.sandbox.simulators import Sandbox
from amosync.sandbox.unisender import UnisenderError


def routes(sandbox: Sandbox) -> list[Route]:
    """One route per declared control, under `/_sandbox`."""
    return [_route(sandbox, control) for group in ALL for control in group.by_name.values()]


def _route(sandbox: Sandbox, control: Control) -> Route:
    async def endpoint(request: Request) -> Response:
        try:
            arguments = await _arguments(control, request)
            result = control.validated(control.part(sandbox), **arguments)
            if inspect.isawaitable(result):
                result = await result
        except KeyError as exc:
            return _json({"error": "not_found", "detail": str(exc.args[0])}, 404)
        except (ValueError, TypeError) as exc:
            return _json({"error": "bad_request", "detail": str(exc)}, 400)
        except UnisenderError as exc:  # what Unisender itself would refuse
            return _json({"error": "bad_request", "detail": f"{exc.code}: {exc.message}"}, 400)
        if control.no_content:
            return Response(status_code=204)
        if isinstance(result, bytes):  # a webhook's body, as amoCRM would post it
            return Response(result, 200, media_type="application/x-www-form-urlencoded")
        return _json(control.answer(result), 200)

    return Route(f"/_sandbox{control.path}", endpoint, methods=[control.verb])


async def _arguments(control: Control, request: Request) -> dict[str, Any]:
    """The query's or the JSON body's arguments, and the path's (which win)."""
    arguments = dict(request.path_params)
    if control.send == "query":
        return dict(request.query_params) | arguments
    raw = await request.body()
    if not raw:
        return arguments
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body | arguments


def _json(value: Any, status: int) -> Response:
    return Response(orjson.dumps(value), status, media_type="application/json")
