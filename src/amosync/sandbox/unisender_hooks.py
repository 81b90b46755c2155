"""Unisender's event notifications (webhooks): `setHook`, `listHooks`, `removeHook`, and
posting an event to the hooks of a key the way Unisender does.

What Unisender's documentation ("Event notification system (Webhooks)") says, and the
simulator follows:

- `setHook(hook_url, events, [event_format, max_parallel])`: `hook_url` is the handler's
  identifier, so setting the same URL again replaces the handler;
- the handler is sent JSON; an answer other than HTTP 200, or none within 3 seconds, is a
  failed delivery, retried every 10 minutes for 24 hours with an extra `retry_count`
  parameter that grows by one each time.

Where the documentation is silent the simulator assumes (and amosync accepts more):

- `events` come as `events[unsubscribe]=*` (list ids or `*` per event name) or as
  `events[]=unsubscribe`; `single_event=1` posts one event per request; `status` is
  `active` or `disabled`;
- after 24 hours of failed deliveries the hook is *stopped*: `listHooks` shows it with
  `status: "disabled"` and nothing is posted to it until `setHook` sets it active again;
- the body is the envelope of Unisender's transactional API (Unisender Go), whose webhook
  documentation gives it in full: `{"auth": md5, "events_by_user": [{"events": [...]}]}`,
  each event `{"event_name", "event_data": {"email", "list_id", "event_time", ...}}`;
  `auth` is the MD5 of the body with `auth` set to the key; `retry_count` is a top-level key.

Time scale: `retry_interval` (600 s) and `stop_after` (86 400 s) are knobs, so a test can
watch a day of failures in seconds. `timeout` is Unisender's 3 seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import structlog

from amosync.sandbox.posting import Poster

log = structlog.get_logger()

EVENT_FORMATS = frozenset({"json_post"})
HOOK_STATUSES = frozenset({"active", "disabled"})


class HookError(ValueError):
    """A `setHook`/`removeHook` argument Unisender would refuse (`invalid_arg`)."""


@dataclass(slots=True)
class Hook:
    hook_url: str
    event_format: str
    events: dict[str, str]  # event name → "*" or comma-separated list ids
    single_event: bool
    max_parallel: int
    status: str

    def as_json(self) -> dict[str, Any]:
        return {
            "hook_url": self.hook_url,
            "event_format": self.event_format,
            "events": dict(self.events),
            "single_event": int(self.single_event),
            "max_parallel": self.max_parallel,
            "status": self.status,
        }

    def wants(self, event_name: str, list_id: int | None) -> bool:
        lists = self.events.get(event_name)
        if lists is None or self.status != "active":
            return False
        if lists.strip() in ("", "*"):
            return True
        return list_id is not None and str(list_id) in {p.strip() for p in lists.split(",")}


@dataclass(slots=True)
class HookDelivery:
    """One event on its way to one hook, with every attempt's outcome."""

    key: str
    hook_url: str
    event: dict[str, Any]
    first_at: float
    due: float
    attempts: int = 0
    statuses: list[int | str] = field(default_factory=list)
    done: bool = False
    abandoned: bool = False

    def as_json(self) -> dict[str, Any]:
        data = self.event.get("event_data") or {}
        return {
            "hook_url": self.hook_url,
            "event_name": self.event.get("event_name"),
            "email": data.get("email"),
            "list_id": data.get("list_id"),
            "attempts": self.attempts,
            "statuses": list(self.statuses),
            "delivered": self.done,
            "abandoned": self.abandoned,
        }


class HookDesk:
    """The hooks of every key and the deliveries to them."""

    def __init__(self) -> None:
        self.timeout = 3.0
        self.retry_interval = 600.0
        self.stop_after = 86_400.0
        self.hooks: dict[str, dict[str, Hook]] = {}  # key → hook_url → hook
        self.deliveries: list[HookDelivery] = []
        self._outbox: list[HookDelivery] = []
        self._inflight = 0
        self._wake: asyncio.Event | None = None
        self._poster = Poster(self._run)

    # --- the API methods ------------------------------------------------------------------

    def set_hook(self, key: str, params: Mapping[str, Any]) -> dict[str, Any]:
        url = str(params.get("hook_url") or "").strip()
        if not url.startswith(("http://", "https://")):
            raise HookError('Argument "hook_url" must be an http(s) URL')
        event_format = str(params.get("event_format") or "json_post")
        if event_format not in EVENT_FORMATS:
            raise HookError(f'event_format "{event_format}" is not supported by the sandbox')
        events = _events(params.get("events"))
        if not events:
            raise HookError('Argument "events" is required')
        status = str(params.get("status") or "active")
        if status not in HOOK_STATUSES:
            raise HookError('Argument "status" must be active or disabled')
        try:
            max_parallel = int(params.get("max_parallel") or 1)
        except ValueError:
            raise HookError('Argument "max_parallel" must be a number') from None
        hook = Hook(
            url,
            event_format,
            events,
            str(params.get("single_event") or "0") == "1",
            max(1, max_parallel),
            status,
        )
        self.hooks.setdefault(key, {})[url] = hook  # the URL identifies it: replaced
        return hook.as_json()

    def list_hooks(self, key: str) -> list[dict[str, Any]]:
        return [hook.as_json() for hook in self.hooks.get(key, {}).values()]

    def remove_hook(self, key: str, params: Mapping[str, Any]) -> dict[str, Any]:
        url = str(params.get("hook_url") or "").strip()
        if not url:
            raise HookError('Argument "hook_url" is required')
        if self.hooks.get(key, {}).pop(url, None) is None:
            raise HookError(f'Hook "{url}" not found')
        return {}

    # --- controls -------------------------------------------------------------------------

    def stop(self, key: str, hook_url: str | None = None) -> int:
        """Stop the key's hook(s) as Unisender does after a day of failed deliveries."""
        hooks = [
            hook
            for url, hook in self.hooks.get(key, {}).items()
            if hook_url is None or url == hook_url
        ]
        if hook_url is not None and not hooks:
            raise KeyError(f"no hook at {hook_url} for this key")
        for hook in hooks:
            hook.status = "disabled"
        return len(hooks)

    def forget(self, key: str) -> None:
        self.hooks.pop(key, None)

    # --- posting events -------------------------------------------------------------------

    def emit(self, key: str, event_name: str, email: str, list_id: int | None) -> int:
        """Queue the event for every active hook of `key` that wants it; returns how many."""
        event = {
            "event_name": event_name,
            "event_data": {
                "email": email,
                "list_id": list_id,
                "event_time": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            },
        }
        now = time.monotonic()
        queued = 0
        for hook in self.hooks.get(key, {}).values():
            if hook.wants(event_name, list_id):
                delivery = HookDelivery(key, hook.hook_url, event, now, now)
                self.deliveries.append(delivery)
                self._outbox.append(delivery)
                queued += 1
        if queued:
            self._start()
        return queued

    def body(self, delivery: HookDelivery) -> bytes:
        """The JSON posted for `delivery`'s next attempt, `auth` signed with the key."""
        envelope: dict[str, Any] = {
            "auth": delivery.key,
            "events_by_user": [{"login": "sandbox", "events": [delivery.event]}],
        }
        if delivery.attempts:
            envelope["retry_count"] = delivery.attempts
        envelope["auth"] = hashlib.md5(orjson.dumps(envelope), usedforsecurity=False).hexdigest()
        return orjson.dumps(envelope)

    def _start(self) -> None:
        if self._wake is not None:
            self._wake.set()
        if self._poster.start():  # without a loop, `flush()` delivers them
            self._wake = asyncio.Event()  # before the task first runs

    async def _run(self) -> None:
        assert self._wake is not None
        while self._outbox:
            now = time.monotonic()
            due = [d for d in self._outbox if d.due <= now]
            if not due:
                self._wake.clear()
                wait = min(d.due for d in self._outbox) - now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                continue
            for delivery in due:
                self._outbox.remove(delivery)
            self._inflight += len(due)
            try:
                await asyncio.gather(*(self._deliver(d) for d in due))
            finally:
                self._inflight -= len(due)

    async def _deliver(self, delivery: HookDelivery) -> None:
        hook = self.hooks.get(delivery.key, {}).get(delivery.hook_url)
        if hook is None or hook.status != "active":
            delivery.abandoned = True  # removed or stopped meanwhile: nothing is posted
            return
        body = self.body(delivery)
        delivery.attempts += 1
        try:
            response = await self._poster.http.post(
                delivery.hook_url,
                content=body,
                headers={"Content-Type": "application/json"},
                timeout=self.timeout,
            )
            outcome: int | str = response.status_code
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        delivery.statuses.append(outcome)
        if outcome == 200:
            delivery.done = True
            return
        now = time.monotonic()
        if now - delivery.first_at + self.retry_interval > self.stop_after:
            # A day of failures: Unisender stops the hook.
            hook.status = "disabled"
            delivery.abandoned = True
            log.info("sandbox.unisender.hook.stopped", hook_url=delivery.hook_url)
            return
        delivery.due = now + self.retry_interval
        self._outbox.append(delivery)

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every delivery due now has been attempted (retries may stay queued)."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if not self._inflight and not any(d.due <= now for d in self._outbox):
                return
            if now > deadline:
                raise TimeoutError("hook deliveries did not finish in time")
            self._start()
            await asyncio.sleep(0.01)

    async def aclose(self) -> None:
        await self._poster.aclose()


def _events(value: Any) -> dict[str, str]:
    """`events[unsubscribe]=*` (a map) or `events[]=unsubscribe` (a list) or one name."""
    if isinstance(value, Mapping):
        return {str(name): str(lists) for name, lists in value.items() if str(name)}
    if isinstance(value, list | tuple):
        return {str(name): "*" for name in value if str(name)}
    if isinstance(value, str) and value:
        return {name.strip(): "*" for name in value.split(",") if name.strip()}
    return {}
