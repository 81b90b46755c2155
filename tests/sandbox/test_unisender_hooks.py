"""Unisender hooks over HTTP: setHook/listHooks/removeHook, and an unsubscribe posted to the
hook the way Unisender posts it (3 s timeout, redelivery with retry_count, stopped after a
day of failures — a day of the sandbox's time scale)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson
import pytest

from tests.sandbox.conftest import KEY, Receiver, Served


async def set_hook(served: Served, url: str, **extra: str) -> dict[str, Any]:
    params = {
        "hook_url": url,
        "event_format": "json_post",
        "events[unsubscribe]": "*",
        "single_event": "1",
        "status": "active",
        **extra,
    }
    return dict((await served.unisender("setHook", **params)).json())


async def subscribed(served: Served, email: str) -> int:
    list_id = served.uni.create_list(KEY, "amoCRM")
    answer = await served.unisender(
        "importContacts",
        **{
            "field_names[0]": "email",
            "field_names[1]": "email_list_ids",
            "data[0][0]": email,
            "data[0][1]": str(list_id),
        },
    )
    assert answer.json()["result"]["inserted"] == 1
    return list_id


@pytest.fixture
async def hooked(served: Served, receiver: tuple[Receiver, str]) -> tuple[Receiver, int]:
    """ann@example.com on a list of KEY's, and a hook for unsubscribes set on the receiver."""
    target, url = receiver
    list_id = await subscribed(served, "ann@example.com")
    await set_hook(served, url)
    return target, list_id


async def test_set_list_and_remove_a_hook(served: Served) -> None:
    url = "https://amosync.example.test/unisender/webhook?token=t1"
    assert "result" in await set_hook(served, url)
    # The URL identifies the handler: setting it again replaces it.
    await set_hook(served, url, status="disabled")
    listed = (await served.unisender("listHooks")).json()["result"]
    assert listed == [
        {
            "hook_url": url,
            "event_format": "json_post",
            "events": {"unsubscribe": "*"},
            "single_event": 1,
            "max_parallel": 1,
            "status": "disabled",
        }
    ]
    assert (await served.unisender("removeHook", hook_url=url)).json() == {"result": {}}
    assert (await served.unisender("listHooks")).json() == {"result": []}
    again = (await served.unisender("removeHook", hook_url=url)).json()
    assert again["code"] == "invalid_arg"


async def test_set_hook_refuses_what_unisender_would(served: Served) -> None:
    no_url = (await served.unisender("setHook", hook_url="", **{"events[unsubscribe]": "*"})).json()
    assert no_url["code"] == "invalid_arg"
    no_events = (await served.unisender("setHook", hook_url="https://x.test/h")).json()
    assert no_events["code"] == "invalid_arg"
    # events[]=unsubscribe, the form the documentation's URL shows, is taken too.
    listed = await served.unisender(
        "setHook", hook_url="https://x.test/h", **{"events[]": "unsubscribe"}
    )
    assert listed.json()["result"]["events"] == {"unsubscribe": "*"}


async def test_an_unsubscribe_is_posted_to_the_hook_signed_with_the_key(
    served: Served, hooked: tuple[Receiver, int]
) -> None:
    target, list_id = hooked
    served.uni.unsubscribe(KEY, "ann@example.com")
    await served.uni.hooks.flush()
    assert len(target.events) == 1
    body = target.events[0]
    (event,) = body["events_by_user"][0]["events"]
    assert event["event_name"] == "unsubscribe"
    assert event["event_data"]["email"] == "ann@example.com"
    assert event["event_data"]["list_id"] == list_id
    assert "retry_count" not in body
    # auth: the MD5 of the body (written without spaces) with auth set to the API key.
    signed = orjson.dumps({**body, "auth": KEY})
    assert body["auth"] == hashlib.md5(signed, usedforsecurity=False).hexdigest()
    assert served.uni.contact(KEY, "ann@example.com")["status"] == "unsubscribed"  # type: ignore[index]
    # Unsubscribing again changes nothing, so nothing more is posted.
    served.uni.unsubscribe(KEY, "ann@example.com")
    await served.uni.hooks.flush()
    assert len(target.events) == 1


async def test_a_failed_delivery_is_retried_with_retry_count_then_the_hook_stops(
    served: Served, hooked: tuple[Receiver, int]
) -> None:
    target, _list_id = hooked
    served.uni.hook_retry_interval = 0.2
    served.uni.hook_stop_after = 0.7
    target.status = 503
    served.uni.unsubscribe(KEY, "ann@example.com")
    for _ in range(100):
        if (await served.unisender("listHooks")).json()["result"][0]["status"] == "disabled":
            break
        await asyncio.sleep(0.05)
    counts = [body.get("retry_count") for body in target.events]
    assert counts[0] is None
    assert counts[1:] == list(range(1, len(counts)))
    assert 2 <= len(counts) <= 5
    (delivery,) = [d.as_json() for d in served.uni.hooks.deliveries]
    assert delivery["abandoned"]
    assert not delivery["delivered"]
    # A stopped hook gets nothing until setHook sets it active again.
    target.status = 200
    await served.unisender(
        "importContacts",
        **{
            "field_names[0]": "email",
            "data[0][0]": "bob@example.com",
            "field_names[1]": "email_list_ids",
            "data[0][1]": "1",
        },
    )
    posted = len(target.events)
    served.uni.unsubscribe(KEY, "bob@example.com")
    await served.uni.hooks.flush()
    assert len(target.events) == posted


async def test_an_answer_slower_than_three_seconds_is_a_failure(
    served: Served, hooked: tuple[Receiver, int]
) -> None:
    target, _list_id = hooked
    served.uni.hook_timeout = 0.2  # Unisender's 3 s, scaled down
    served.uni.hook_retry_interval = 0.1
    target.delay = 0.5
    served.uni.unsubscribe(KEY, "ann@example.com")
    await served.uni.hooks.flush()
    target.delay = 0
    await asyncio.sleep(0.2)
    await served.uni.hooks.flush()
    (delivery,) = served.uni.hooks.deliveries
    assert delivery.statuses[0] == "ReadTimeout"
    assert delivery.done
    assert target.events[-1]["retry_count"] >= 1


async def test_the_control_api_unsubscribes_and_shows_hooks(
    served: Served, hooked: tuple[Receiver, int]
) -> None:
    target, _list_id = hooked
    await served.http.post(
        "/_sandbox/unisender/unsubscribe", json={"key": KEY, "email": "ann@example.com"}
    )
    await served.http.post("/_sandbox/unisender/hooks/flush", json={})
    deliveries = (await served.http.get("/_sandbox/unisender/hook-deliveries")).json()
    assert [(d["email"], d["delivered"]) for d in deliveries] == [("ann@example.com", True)]
    stopped = await served.http.post("/_sandbox/unisender/hooks/stop", json={"key": KEY})
    assert stopped.json() == {"stopped": 1}
    hooks = (await served.http.get("/_sandbox/unisender/hooks", params={"key": KEY})).json()
    assert hooks[0]["status"] == "disabled"
    assert len(target.events) == 1
