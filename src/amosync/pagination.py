"""Opaque cursors for `{"items", "next_cursor"}` lists (keyset pagination on an integer key)."""

from __future__ import annotations

import base64
from typing import Generic, TypeVar

from pydantic import BaseModel

from amosync.errors import BadRequest

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(key: int) -> str:
    return base64.urlsafe_b64encode(f"k{key}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode()).decode()
        if not raw.startswith("k"):
            raise ValueError(raw)
        return int(raw[1:])
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(
            "the cursor is not one this API returned; start again without it",
            code="invalid_cursor",
        ) from exc
