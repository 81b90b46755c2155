"""Reading a body that may come as JSON or as a form (the widget sends either), and the
nesting limit on every JSON body the service reads.

The json module parses nested arrays and objects by recursion: a body of a few thousand
"[" ends in RecursionError, anywhere JSON is read (here, and in FastAPI's own parsing of
request bodies). No body of this API nests deeper than a handful of levels, so bodies over
`MAX_JSON_DEPTH` are refused before they are parsed (here, and in `BodyLimitMiddleware`
for every route). The json module is kept for the parsing itself: unlike orjson, it reads
an integer of any size exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel, Field, ValidationError

from amosync.errors import BadRequest
from amosync.http.auth import CallerDep
from amosync.http.ids import BIGINT_MAX

M = TypeVar("M", bound=BaseModel)

MAX_JSON_DEPTH = 64
# A JSON string (in a body orjson has parsed, so every string is closed: linear time).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"', re.DOTALL)
# An innermost array or object: one with no bracket inside.
_INNERMOST = re.compile(rb"\[[^\[\]{}]*+\]|\{[^\[\]{}]*+\}")


def json_too_deep(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `raw`, read as JSON, may nest arrays and objects deeper than `limit`.

    Cheap for ordinary bodies (fewer brackets than `limit`: two `bytes.count`). Otherwise
    orjson, which parses without recursing and stops at 1024 levels, checks the body; its
    strings are taken out and the innermost brackets peeled off `limit` times, each time by
    one regular-expression pass in C: a bracket left is deeper than `limit`. A body orjson
    refuses (too deep, not JSON, NaN, not UTF-8) counts as too deep: the json module would
    either recurse through its brackets or refuse its syntax, and 422 is the answer to both.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return True
    rest = _STRING.sub(b"", raw)
    for _ in range(limit):
        rest, peeled = _INNERMOST.subn(b"", rest)
        if not peeled:
            return False
    return _INNERMOST.search(rest) is not None


def load_json(raw: bytes) -> object:
    """`json.loads(raw)` (integers exact), or a 422 for a body that is not JSON or too deep."""
    if json_too_deep(raw):
        raise BadRequest(
            f"the body is not valid JSON, or nests deeper than {MAX_JSON_DEPTH} levels",
            code="invalid_request",
            status=422,
        )
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(
            "the body is neither valid JSON nor a form", code="invalid_request", status=422
        ) from exc


async def read_fields(request: Request, model: type[M]) -> M:
    """Parse the body as `model`; a clear 4xx for anything malformed."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    data: object
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        data = {key: value for key, value in form.items() if isinstance(value, str)}
    else:
        data = load_json(raw) if raw else {}
    if not isinstance(data, dict):
        raise BadRequest("the body must be an object", code="invalid_request", status=422)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise BadRequest(problems, code="invalid_request", status=422) from exc


def json_or_form(model: type[BaseModel]) -> dict[str, Any]:
    """The `openapi_extra` of a route that reads its body with `read_fields`: `model`, as
    JSON or as a form (FastAPI sees no body parameter to declare)."""
    return {
        "requestBody": {
            "content": {
                "application/json": {"schema": model.model_json_schema()},
                "application/x-www-form-urlencoded": {"schema": model.model_json_schema()},
            },
            "required": True,
        }
    }


class AccountFields(BaseModel):
    """A body that names the account it acts on (the widget's forms do)."""

    account_id: int = Field(gt=0, le=BIGINT_MAX)


A = TypeVar("A", bound=AccountFields)


def fields_for_account(model: type[A]) -> Callable[..., Awaitable[A]]:
    """A dependency reading `model` with `read_fields` (declare it with `json_or_form`),
    for an account the caller may act on (403 otherwise)."""

    async def read(request: Request, caller: CallerDep) -> A:
        body = await read_fields(request, model)
        caller.require_account(body.account_id)
        return body

    return read
