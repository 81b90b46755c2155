"""A small JSON-RPC 2.0 dispatcher: single calls, batches and notifications.

    rpc = RpcDispatcher()
    rpc.register("account.disconnect", disconnect, DisconnectParams)
    answer = await rpc.handle(body)     # bytes to send with 200, or None: answer 204

Handlers are async functions taking a validated pydantic model of their params, passed by
name (an object); params by position (an array) are refused with -32602. A handler raises
`RpcError` for an error of its own (e.g. -32004 "account not found"); any other exception
is logged with its traceback and answered -32603 with a generic message.

Errors follow https://www.jsonrpc.org/specification: -32700 the body is not JSON; -32600 not
a request object (no `"jsonrpc": "2.0"`, a method that is not a string, an id that is not a
string, number or null, params that are neither object nor array), an empty batch or one
over `max_batch` calls; -32601 no such method; -32602 params that do not validate.
Notifications (no `id` member) are run but never answered, unless they are not valid
requests at all; a batch of notifications answers nothing (None).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import structlog
from pydantic import BaseModel, ValidationError

log = structlog.get_logger()

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
MAX_BATCH = 100

P = TypeVar("P", bound=BaseModel)


class RpcError(Exception):
    """An error answer: raise it from a handler with a code of the method's own."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


@dataclass(frozen=True, slots=True)
class _Method:
    handler: Callable[[Any], Awaitable[Any]]
    params_model: type[BaseModel]


class RpcDispatcher:
    def __init__(self, *, max_batch: int = MAX_BATCH) -> None:
        self.max_batch = max_batch
        self._methods: dict[str, _Method] = {}

    def register(
        self,
        name: str,
        handler: Callable[[P], Awaitable[Any]],
        params_model: type[P],
    ) -> None:
        """Route calls of `name` to `handler`, with params validated as `params_model`."""
        if name.startswith("rpc."):
            raise ValueError("method names starting with 'rpc.' are reserved by JSON-RPC")
        if name in self._methods:
            raise ValueError(f"method {name!r} is already registered")
        self._methods[name] = _Method(handler, params_model)

    async def handle(self, body: bytes) -> bytes | None:
        """The response body, or None when there is nothing to answer (notifications)."""
        try:
            # orjson refuses invalid UTF-8, NaN and nesting over 1024 levels with a
            # JSONDecodeError, where the json module would raise RecursionError.
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _error(None, PARSE_ERROR, "Parse error: the body is not valid JSON")
        if not isinstance(message, list):
            return await self._one(message)
        if not message:
            return _error(None, INVALID_REQUEST, "Invalid Request: the batch is empty")
        if len(message) > self.max_batch:
            detail = f"Invalid Request: a batch holds at most {self.max_batch} calls"
            return _error(None, INVALID_REQUEST, detail)
        # One after the other: handlers may share a database and the order is the caller's.
        answers = [answer for call in message if (answer := await self._one(call)) is not None]
        if not answers:
            return None
        return b"[" + b",".join(answers) + b"]"

    async def _one(self, call: Any) -> bytes | None:
        """One request object of a body or a batch: its answer, serialized, or None."""
        if not isinstance(call, dict):
            return _error(None, INVALID_REQUEST, "Invalid Request: a call must be an object")
        notification = "id" not in call
        id_ = call.get("id")
        if not _valid_id(id_):
            return _error(None, INVALID_REQUEST, "Invalid Request: id must be a string or number")
        if call.get("jsonrpc") != "2.0":
            return _error(id_, INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"')
        name = call.get("method")
        if not isinstance(name, str):
            return _error(id_, INVALID_REQUEST, "Invalid Request: method must be a string")
        params = call.get("params", {})
        if not isinstance(params, dict | list):
            detail = "Invalid Request: params must be an object or an array"
            return _error(id_, INVALID_REQUEST, detail)
        answer = await self._call(id_, name, params)
        return None if notification else answer

    async def _call(self, id_: Any, name: str, params: dict[str, Any] | list[Any]) -> bytes:
        method = self._methods.get(name)
        if method is None:
            return _error(id_, METHOD_NOT_FOUND, f"Method not found: {name[:100]}")
        if isinstance(params, list):
            return _error(id_, INVALID_PARAMS, "Invalid params: pass them by name, as an object")
        try:
            model = method.params_model.model_validate(params)
        except ValidationError as exc:
            problems = [
                {"field": ".".join(str(part) for part in e["loc"]), "problem": e["msg"]}
                for e in exc.errors(include_url=False)
            ]
            return _error(id_, INVALID_PARAMS, "Invalid params", problems)
        try:
            result = await method.handler(model)
            return orjson.dumps({"jsonrpc": "2.0", "result": result, "id": id_})
        except RpcError as exc:
            return _error(id_, exc.code, exc.message, exc.data)
        except Exception:
            # Params are not logged: they may carry keys or tokens.
            log.exception("rpc.call.failed", method=name)
            return _error(id_, INTERNAL_ERROR, "Internal error; it has been logged")


def _valid_id(id_: Any) -> bool:
    """A string, a number or null (booleans are numbers to Python, not to JSON)."""
    if isinstance(id_, bool):
        return False
    if isinstance(id_, float):
        return math.isfinite(id_)
    return id_ is None or isinstance(id_, str | int)


def _error(id_: Any, code: int, message: str, data: Any = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    try:
        return orjson.dumps({"jsonrpc": "2.0", "error": error, "id": id_})
    except TypeError:
        # An RpcError whose data is not JSON: the code and message still go out.
        log.warning("rpc.error_data.not_json", code=code)
        return orjson.dumps(
            {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": id_}
        )
