"""Opaque cursors for `{"items", "next_cursor"}` lists (keyset pagination on an integer key)."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from amosync.errors import BadRequest
from amosync.http.ids import BIGINT_MAX

T = TypeVar("T")
R = TypeVar("R")

# `?limit=` of a list route: how many items a page holds at most.
Limit = Annotated[int, Query(ge=1, le=1000)]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(key: int) -> str:
    return base64.urlsafe_b64encode(f"k{key}".encode()).decode().rstrip("=")


# What `encode_cursor` writes for the keys it is given (ids: 0 to BIGINT_MAX). Stricter
# than int(), which also reads "-1", " 1", "1_000" and digits of other scripts.
_KEY = re.compile(r"k(0|[1-9][0-9]{0,18})")


def decode_cursor(cursor: str | None) -> int | None:
    """The key an `encode_cursor` cursor holds; 400 for anything that is not one."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        found = _KEY.fullmatch(base64.urlsafe_b64decode(padded.encode()).decode("ascii"))
    except (ValueError, UnicodeError):  # binascii.Error is a ValueError
        found = None
    if found is None or int(found[1]) > BIGINT_MAX:
        raise BadRequest(
            "the cursor is not one this API returned; start again without it",
            code="invalid_cursor",
        )
    return int(found[1])


def next_page(
    rows: Sequence[R], limit: int, key: Callable[[R], int]
) -> tuple[Sequence[R], str | None]:
    """Rows read `limit + 1` at a time (one more tells whether a page follows): the first
    `limit`, and the cursor of the next page, None on the last."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(key(rows[-1]))
