"""Per-account and per-key request pacing, shared by everything in one process.

amoCRM allows 7 requests per second per account and Unisender 1200 calls per minute per API
key. Every client that talks to the same account or key must draw from the same limiter, so
the process builds one `RateLimits` at start-up (see `amosync.runtime.services`) and hands it
around.
An amoCRM account's limiter is keyed by its host (`amocrm_key`), which the install knows
before the account's id: the code exchange, the API calls and every token refresh of the
account draw from it.

The limit is per process: several `amosync worker` processes each pace themselves, and the
429 / `api_call_limit_exceeded_*` handling in the clients absorbs what they add up to.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from aiolimiter import AsyncLimiter

# amoCRM counts requests per any 1-second window, measured when they *arrive*. We can only
# control when they leave, and network or event-loop delay can push an early request later
# while a later one arrives on time, squeezing one more into the server's window. Spacing
# calls 5% wider than 1/rate tolerates 50 ms of such skew at 7 rps (3 s at 1200/minute).
SPACING_MARGIN = 1.05


# amoCRM counts a call when it *arrives*; we only know when it leaves and when its answer
# comes back. A call k - 7 that arrived late (the network, our event loop between its
# release and its write, a busy server) and a call k that arrived early would land less
# than 1 s apart. How late k - 7 can have arrived is bounded by its answer, which cannot
# come before it arrived: by at most how much longer its round trip took than the fastest
# seen. So call k waits 1 s plus that excess, plus `WINDOW_SLACK` for timer granularity and
# for the fastest round trip being slower than its halves' fastest (it takes a moment when
# both the way there and the way back were as quick as they get; at a load of 12 on the
# 2-core machine, a slack of 5 ms was 2 ms short once in 400 calls).
#
# Measured against the sandbox in another process (30 ms latency; 2 cores shared with other
# heavy processes, load 6-7): release to receipt took 1.4-47 ms (p50 5, p99 39), and the
# sandbox's latency sleep added up to 22 ms before it counted the call; with a fixed margin
# of 35 ms, 2 of 400 calls drew a 429 (the worst pair was 47 ms apart in skew). A fixed
# margin safe there costs ~5% of the throughput at every call; the excess costs only when
# it happens, and is large only where it must be: with the sandbox in the service's own
# event loop (the tests), a stalled loop held calls for up to 0.8 s before they were
# counted. Sequential callers (a full sync) do not wait for it when the server is slow:
# their call k - 7 is long past.
WINDOW_SLACK = 0.01
# A call whose answer is not reported (a bare `acquire()`) is assumed this late at most: the
# tolerance the even spacing of 1.05/7 s gave.
BLIND_MARGIN = 0.05
# Round trips are compared with the fastest of their kind once this many were seen.
KIND_SAMPLES = 3
MAX_KINDS = 64  # beyond these (paths with ids), calls are compared with the fastest of all


class Limiter(Protocol):
    """What the clients wait on before each request (an `AsyncLimiter` is one)."""

    async def acquire(self) -> None:
        """Return when the next call may start."""
        ...


class Slot:
    """One call's place in a `SlidingWindow`: when it left and when its answer came."""

    __slots__ = ("_window", "answered", "at", "kind", "known")

    def __init__(self, window: SlidingWindow, at: float, kind: str) -> None:
        self._window = window
        self.at = at
        self.kind = kind
        self.answered: float | None = None
        self.known = asyncio.Event()  # set once the answer came or the call ended without

    def answer(self) -> None:
        """The answer's first bytes are in: the call had arrived by now."""
        if self.answered is None:
            self.answered = time.monotonic()
            self._window._trip(self.kind, self.answered - self.at)
        self.known.set()


class _NoSlot:
    """What `paced` hands a block under a limiter that keeps no slots."""

    def answer(self) -> None:
        pass


class SlidingWindow:
    """At most `limit` calls in any window of `period` seconds at the server.

    The k-th call starts no earlier than `period` plus a margin after the (k - limit)-th
    one started: the rule amoCRM enforces (a sliding window), so the full `limit` is used
    with no spacing lost, and a call that leaves late (the event loop was busy) only delays
    the call `limit` places after it, not every later one as even spacing would. The margin
    is the excess of that earlier call's round trip (to `Slot.answer()`, or to the end of
    the `call()` block) over the fastest one seen of its kind, at most one `period`; see
    `WINDOW_SLACK`.
    While that earlier call is still out, the next one waits for its answer, or for a
    `period` beyond its window. Starts are stamped when the call is released, after any
    oversleep, so a late release never lets a later call in early. Waiters are served first
    come, first served.
    """

    def __init__(self, limit: int, period: float = 1.0, *, slack: float = WINDOW_SLACK) -> None:
        if limit < 1 or period <= 0 or not 0 <= slack <= period:
            raise ValueError(f"bad window: {limit} per {period} s, slack {slack}")
        self.limit = limit
        self.period = period
        self.slack = slack
        self._slots: deque[Slot] = deque(maxlen=limit)
        self._fastest = math.inf  # the shortest round trip seen
        self._fastest_of: dict[str, tuple[int, float]] = {}  # by kind: calls seen, fastest
        self._turn = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait for a place; with no answer reported, the next call counts on `BLIND_MARGIN`."""
        (await self._take()).known.set()

    @asynccontextmanager
    async def call(self, kind: str = "") -> AsyncIterator[Slot]:
        """Wait for a place and hold it while the block makes the call.

        Call `answer()` on the slot when the answer's headers are in; otherwise the end of
        the block counts as the answer, however it ends (a timeout, a cancellation): the
        call reached the server by then if ever, as far as we can know.
        """
        slot = await self._take(kind)
        try:
            yield slot
        finally:
            slot.answer()

    async def _take(self, kind: str = "") -> Slot:
        async with self._turn:
            if len(self._slots) == self.limit:
                oldest = self._slots[0]
                while (wait := self._earliest(oldest) - time.monotonic()) > 0:
                    if oldest.known.is_set():
                        await asyncio.sleep(wait)
                    else:  # still out: its answer tells how long to wait
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(oldest.known.wait(), wait)
            slot = Slot(self, time.monotonic(), kind)
            self._slots.append(slot)
            return slot

    def _earliest(self, earlier: Slot) -> float:
        """When a call may start that shares no window with `earlier` at the server."""
        if earlier.answered is not None:
            excess = (earlier.answered - earlier.at) - self._fastest_for(earlier.kind)
            margin = min(self.period, max(0.0, excess) + self.slack)
        elif earlier.known.is_set():  # a bare `acquire()`: no answer reported
            margin = min(BLIND_MARGIN, self.period)
        else:
            margin = self.period
        return earlier.at + self.period + margin

    def _fastest_for(self, kind: str) -> float:
        """The fastest round trip of calls of this kind, once a few were seen, else of any.

        A page of 250 contacts takes the server longer after counting it than a small call
        does; against the fastest small call, every page would look late by the difference.
        """
        seen, fastest = self._fastest_of.get(kind, (0, math.inf))
        return fastest if seen >= KIND_SAMPLES else self._fastest

    def _trip(self, kind: str, seconds: float) -> None:
        self._fastest = min(self._fastest, seconds)
        if kind in self._fastest_of or len(self._fastest_of) < MAX_KINDS:
            seen, fastest = self._fastest_of.get(kind, (0, math.inf))
            self._fastest_of[kind] = (seen + 1, min(fastest, seconds))


@asynccontextmanager
async def paced(limiter: Limiter, kind: str = "") -> AsyncIterator[Slot | _NoSlot]:
    """Run the block as one call under `limiter`; `answer()` the slot when headers are in.

    `kind` names calls alike in the server's work (e.g. method and path).
    """
    if isinstance(limiter, SlidingWindow):
        async with limiter.call(kind) as slot:
            yield slot
    else:
        await limiter.acquire()
        yield _NoSlot()


def window_limiter(rate: float) -> SlidingWindow:
    """A `SlidingWindow` allowing `rate` calls per second (fewer than 1: one per 1/rate s).

    A rate of 7.5 allows 7 in any second: a window of 1 s can only hold whole calls.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate!r}")
    if rate < 1:
        return SlidingWindow(1, 1 / rate)
    return SlidingWindow(math.floor(rate), 1.0)


def amocrm_key(host: str) -> str:
    """The registry key of an amoCRM account's limit: its host, e.g. `acme.amocrm.ru`."""
    return f"amocrm:host:{host.lower()}"


def make_limiter(rate: float) -> AsyncLimiter:
    """A limiter that lets at most `rate` calls start in any window of one second.

    `AsyncLimiter(max_rate, time_period)` is a leaky bucket holding `max_rate` calls that
    drains at `max_rate / time_period` per second, so it allows a burst of `max_rate` at once
    and then `rate` more per second: `AsyncLimiter(7, 1)` lets up to 13 calls start within
    one second. A bucket of one call draining every `1/rate` seconds never bursts: calls
    start at least `1/rate` apart, so any 1-second window holds at most `rate` of them.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate!r}")
    return AsyncLimiter(1, SPACING_MARGIN / rate)


class RateLimits:
    """A registry of limiters keyed by what is limited, e.g. ``amocrm:host:acme.amocrm.ru``.

    Limiters are created on first use with the rate given then; later calls with the same
    key get the same limiter whatever rate they pass. Keys must never contain a secret: use
    `amosync.upstream.redact.secret_key()` for API keys.
    """

    def __init__(self) -> None:
        self._spaced: dict[str, AsyncLimiter] = {}
        self._windows: dict[str, SlidingWindow] = {}

    def get(self, key: str, rate: float) -> AsyncLimiter:
        """The limiter for `key`, allowing `rate` calls per second, evenly spaced."""
        limiter = self._spaced.get(key)
        if limiter is None:
            limiter = self._spaced[key] = make_limiter(rate)
        return limiter

    def window(self, key: str, rate: float) -> SlidingWindow:
        """The limiter for `key`, allowing `rate` calls in any second (`window_limiter`).

        For amoCRM, whose limit is a sliding window of one second (Unisender's is per
        minute, and even spacing suits it).
        """
        limiter = self._windows.get(key)
        if limiter is None:
            limiter = self._windows[key] = window_limiter(rate)
        return limiter

    def __len__(self) -> int:
        return len(self._spaced) + len(self._windows)
