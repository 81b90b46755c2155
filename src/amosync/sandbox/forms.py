"""PHP-style form arrays: `field_names[0]=email&data[0][0]=a@b.c` → nested lists and dicts."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


_ESCAPES = re.compile(rb"(?:%[0-9A-Fa-f]{2})+")


def _unescape(run: re.Match[bytes]) -> bytes:
    return bytes.fromhex(run.group().replace(b"%", b"").decode())


def _decode(text: str) -> str:
    """`unquote_plus`, with each run of escapes turned into bytes in one go rather than one
    escape at a time (an escaped Cyrillic name is a run of twenty)."""
    if "+" in text:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    return _ESCAPES.sub(_unescape, text.encode()).decode("utf-8", "replace")


# An import's keys (`data[i][j]`) are the same in every call: each is decoded and split once.
_decode_key = lru_cache(maxsize=8192)(_decode)


def parse_form(body: str) -> list[tuple[str, str]]:
    """`urllib.parse.parse_qsl(body, keep_blank_values=True)`, several times faster on the
    large bodies of importContacts (tests/sandbox/test_forms.py holds them equal)."""
    pairs = []
    for piece in body.split("&"):
        if piece:
            key, _, value = piece.partition("=")
            pairs.append((_decode_key(key), _decode(value)))
    return pairs


@lru_cache(maxsize=8192)
def _parts(key: str) -> tuple[str, ...] | None:
    match = _KEY.match(key)
    if match is None:
        return None
    return (match.group(1), *_PART.findall(match.group(2)))


def php_params(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Nest bracketed keys as PHP does; maps whose keys are all integers become lists.

    `a[]=x&a[]=y` appends; a later plain value replaces an earlier one.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = _parts(key)
        if parts is None:
            root[key] = value
            continue
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        last = parts[-1]
        if last == "" and len(parts) > 1:
            last = str(len(node))
        node[last] = value
    return {key: _listify(value) for key, value in root.items()}


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    converted = {key: _listify(item) for key, item in value.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted
