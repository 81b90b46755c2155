"""Reading a body that may come as JSON or as a form (the widget sends either)."""

from __future__ import annotations

import json
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from amosync.errors import BadRequest

M = TypeVar("M", bound=BaseModel)


async def read_fields(request: Request, model: type[M]) -> M:
    """Parse the body as `model`; a clear 4xx for anything malformed."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    data: object
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        data = {key: value for key, value in form.items() if isinstance(value, str)}
    else:
        try:
            data = json.loads(raw) if raw else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(
                "the body is neither valid JSON nor a form", code="invalid_request", status=422
            ) from exc
    if not isinstance(data, dict):
        raise BadRequest("the body must be an object", code="invalid_request", status=422)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise BadRequest(problems, code="invalid_request", status=422) from exc
