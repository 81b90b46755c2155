"""What Unisender posts to the hook, read from the fixtures (tests/fixtures/unisender/hooks)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from amosync.consent.events import Unsubscribe, unsubscribes

HOOKS = Path(__file__).parent.parent / "fixtures" / "unisender" / "hooks"


def load(name: str) -> object:
    return orjson.loads((HOOKS / name).read_bytes())


def test_the_documented_envelope() -> None:
    found, other = unsubscribes(load("events_by_user.json"))
    assert found == [Unsubscribe("ann@example.com", 1, "2026-12-02 19:40:00")]
    assert other == 1


def test_the_published_callback_has_no_unsubscribe() -> None:
    assert unsubscribes(load("go_callback.json")) == ([], 2)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("single_event.json", ([Unsubscribe("ann@example.com", 1, "2026-12-02 19:40:00")], 0)),
        ("array.json", ([Unsubscribe("ann@example.com", 1, "2026-12-02 19:40:00")], 1)),
        ("events_array.json", ([Unsubscribe("ann@example.com", None, "1796240400")], 0)),
    ],
)
def test_the_other_shapes_spec_lists(name: str, expected: object) -> None:
    assert unsubscribes(load(name)) == expected


def test_the_same_event_has_the_same_key_and_another_does_not() -> None:
    one = Unsubscribe("ann@example.com", 1, "2026-12-02 19:40:00")
    assert one.dedupe_key == Unsubscribe("ann@example.com", 1, "2026-12-02 19:40:00").dedupe_key
    assert one.dedupe_key != Unsubscribe("ann@example.com", 2, "2026-12-02 19:40:00").dedupe_key


@pytest.mark.parametrize("body", [None, 3, "x", [], {}, {"events": "no"}, [{"email": 5}]])
def test_anything_else_parses_to_nothing(body: object) -> None:
    assert unsubscribes(body)[0] == []
