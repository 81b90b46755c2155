"""A small JSON-RPC 2.0 dispatcher: single calls, batches and notifications.

Handlers are async functions taking a validated pydantic model of their (by-name) params.
Errors follow the spec: -32700 parse error, -32600 invalid request, -32601 method not found,
-32602 invalid params, -32603 internal error; handlers raise `RpcError` for their own codes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import BaseModel, ValidationError

log = structlog.get_logger()

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
MAX_BATCH = 100


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


@dataclass(frozen=True)
class _Method:
    handler: Callable[[Any], Awaitable[Any]]
    params: type[BaseModel]


def _error(id_: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "error": error, "id": id_}


class RpcDispatcher:
    def __init__(self) -> None:
        self._methods: dict[str, _Method] = {}

    def register(
        self, name: str, handler: Callable[[Any], Awaitable[Any]], params: type[BaseModel]
    ) -> None:
        self._methods[name] = _Method(handler, params)

    async def handle(self, body: bytes) -> bytes | None:
        """The response body, or None when nothing is to be answered (notifications)."""
        try:
            message = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _dump(_error(None, PARSE_ERROR, "Parse error: the body is not valid JSON"))
        if isinstance(message, list):
            if not message:
                return _dump(_error(None, INVALID_REQUEST, "Invalid Request: empty batch"))
            if len(message) > MAX_BATCH:
                return _dump(
                    _error(None, INVALID_REQUEST, f"Invalid Request: over {MAX_BATCH} calls")
                )
            answers = [a for a in [await self._one(m) for m in message] if a is not None]
            return _dump(answers) if answers else None
        answer = await self._one(message)
        return None if answer is None else _dump(answer)

    async def _one(self, message: Any) -> dict[str, Any] | None:
        if not isinstance(message, dict):
            return _error(None, INVALID_REQUEST, "Invalid Request: a call must be an object")
        id_ = message.get("id")
        has_id = "id" in message
        if has_id and not (id_ is None or isinstance(id_, str | int)) or isinstance(id_, bool):
            return _error(None, INVALID_REQUEST, "Invalid Request: id must be a string or number")
        method = message.get("method")
        if message.get("jsonrpc") != "2.0" or not isinstance(method, str):
            return _error(
                id_, INVALID_REQUEST, "Invalid Request: needs jsonrpc '2.0' and a method name"
            )
        answer = await self._call(id_, method, message.get("params"))
        return answer if has_id else None

    async def _call(self, id_: Any, name: str, params: Any) -> dict[str, Any]:
        method = self._methods.get(name)
        if method is None:
            return _error(id_, METHOD_NOT_FOUND, f"Method not found: {name[:100]}")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return _error(id_, INVALID_PARAMS, "Invalid params: pass them by name, as an object")
        try:
            model = method.params.model_validate(params)
        except ValidationError as exc:
            details = [
                {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
                for e in exc.errors()
            ]
            return _error(id_, INVALID_PARAMS, "Invalid params", details)
        try:
            result = await method.handler(model)
        except RpcError as exc:
            return _error(id_, exc.code, exc.message, exc.data)
        except Exception:
            log.exception("rpc.failed", method=name)
            return _error(id_, INTERNAL_ERROR, "Internal error; it has been logged")
        return {"jsonrpc": "2.0", "result": result, "id": id_}


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
