"""Reading what Unisender posts to the hook (SPEC §9).

Accepted, since the documentation leaves the envelope partly open: the envelope of
Unisender's webhook format (`{"auth", "events_by_user": [{"events": [...]}]}`, each event
`{"event_name", "event_data": {"email", "list_id", "event_time", ...}}`), a single event
object, a JSON array of events, and an object with an `events` array. In an event the name
is `event_name` or `event`, and `email`, `list_id`, `event_time` may stand in the event or in
its `event_data`. Any other key is ignored. See tests/fixtures/unisender/hooks/.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

UNSUBSCRIBE = "unsubscribe"


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    email: str  # lower-cased, as Unisender and the contacts table keep addresses
    list_id: int | None
    event_time: str | None

    @property
    def dedupe_key(self) -> str:
        """The same event delivered again (Unisender retries) gives the same key."""
        raw = f"{self.email}|{self.list_id}|{self.event_time}"
        return hashlib.sha256(raw.encode()).hexdigest()


def _events(body: Any) -> Iterator[dict[str, Any]]:
    if isinstance(body, list):
        for item in body:
            yield from _events(item)
        return
    if not isinstance(body, dict):
        return
    if isinstance(body.get("events_by_user"), list):
        for user in body["events_by_user"]:
            if isinstance(user, dict):
                yield from _events(user.get("events"))
        return
    if isinstance(body.get("events"), list):
        yield from _events(body["events"])
        return
    yield body


def _field(event: dict[str, Any], name: str) -> Any:
    if event.get(name) is not None:
        return event[name]
    data = event.get("event_data")
    return data.get(name) if isinstance(data, dict) else None


def _list_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 2**63 else None


def unsubscribes(body: Any) -> tuple[list[Unsubscribe], int]:
    """The unsubscribes in a parsed body, and how many other events it held (ignored)."""
    found: list[Unsubscribe] = []
    other = 0
    for event in _events(body):
        name = event.get("event_name") or event.get("event")
        email = _field(event, "email")
        if str(name or "").strip().lower() != UNSUBSCRIBE or not isinstance(email, str):
            other += 1
            continue
        email = email.strip().lower()
        if "@" not in email or len(email) > 320:
            other += 1
            continue
        time = _field(event, "event_time")
        found.append(
            Unsubscribe(
                email,
                _list_id(_field(event, "list_id")),
                str(time)[:64] if isinstance(time, str | int | float) else None,
            )
        )
    return found, other
