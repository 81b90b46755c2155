"""amoCRM's sliding-window limiter and the limits it is shared by."""

from __future__ import annotations

import asyncio
import time

import pytest

from amosync.upstream.ratelimit import (
    BLIND_MARGIN,
    RateLimits,
    SlidingWindow,
    amocrm_key,
    window_limiter,
)


async def starts_of(limiter: SlidingWindow, calls: int) -> list[float]:
    starts: list[float] = []

    async def call() -> None:
        await limiter.acquire()
        starts.append(time.monotonic())

    await asyncio.gather(*(call() for _ in range(calls)))
    return starts


async def test_the_window_lets_the_limit_start_at_once_then_slides() -> None:
    limiter = SlidingWindow(7, 0.5)  # bare acquire(): BLIND_MARGIN
    starts = await starts_of(limiter, 15)
    assert starts == sorted(starts)
    assert starts[6] - starts[0] < 0.05  # the first seven need not wait
    for earlier, later in zip(starts, starts[7:], strict=False):
        assert later - earlier >= 0.5 + BLIND_MARGIN  # the period and the margin, never less
    assert starts[14] - starts[0] < 1.3  # two windows and their margins, no spacing lost
    for i, first in enumerate(starts):
        assert len([t for t in starts[i:] if t < first + 0.5]) <= 7


async def test_a_late_call_delays_only_the_call_a_window_after_it() -> None:
    limiter = SlidingWindow(3, 0.3)
    await limiter.acquire()
    first = time.monotonic()
    await asyncio.sleep(0.2)  # the next two leave late, as after a busy event loop
    await starts_of(limiter, 2)
    await limiter.acquire()
    # 0.3 s after the first call, not 0.3 s after the late ones (as even spacing would).
    assert 0.3 <= time.monotonic() - first < 0.3 + BLIND_MARGIN + 0.1


async def answered_after(limiter: SlidingWindow, seconds: float) -> float:
    """One call whose answer takes `seconds`; returns when it started."""
    async with limiter.call():
        started = time.monotonic()
        await asyncio.sleep(seconds)
    return started


async def test_the_margin_is_the_excess_of_the_earlier_round_trip() -> None:
    limiter = SlidingWindow(2, 0.3, slack=0.005)
    first = await answered_after(limiter, 0.01)  # the fastest round trip: 10 ms
    await answered_after(limiter, 0.01)
    third = await answered_after(limiter, 0.01)
    # As fast as the fastest: it may have arrived no later than it did, so only the slack.
    assert 0.305 <= third - first < 0.35
    fourth = await answered_after(limiter, 0.09)  # 80 ms slower: maybe 80 ms late there
    fifth = await answered_after(limiter, 0.01)
    sixth = await answered_after(limiter, 0.01)
    assert fifth - third >= 0.305
    assert 0.385 <= sixth - fourth < 0.45


async def test_the_margin_is_at_most_a_period_and_a_failed_call_counts_as_ended() -> None:
    limiter = SlidingWindow(1, 0.2, slack=0.005)
    await answered_after(limiter, 0.01)
    slow = await answered_after(limiter, 0.5)  # 490 ms slower than the fastest
    began = time.monotonic()
    await answered_after(limiter, 0.01)
    assert 0.35 <= time.monotonic() - slow < 0.55  # one period of margin, not 490 ms
    assert time.monotonic() - began < 0.2

    async def failing() -> None:
        async with limiter.call():
            await asyncio.sleep(0.01)
            raise RuntimeError("timed out")

    await asyncio.sleep(0.5)
    failed = time.monotonic()
    with pytest.raises(RuntimeError, match="timed out"):
        await failing()
    await limiter.acquire()  # its end is known: the margin of a fast round trip
    assert 0.2 <= time.monotonic() - failed < 0.3


async def test_a_call_still_out_lets_the_next_go_when_its_answer_comes() -> None:
    limiter = SlidingWindow(1, 0.5, slack=0.005)
    await answered_after(limiter, 0.01)  # the fastest round trip
    await asyncio.sleep(0.6)  # its window is past
    out = asyncio.create_task(answered_after(limiter, 0.3))
    await asyncio.sleep(0.05)
    await limiter.acquire()
    went = time.monotonic()
    started = await out
    # Its answer came at 0.3 s (excess 0.29): not the period's wait it had while out.
    # (A loaded machine starts the call late, which shortens the gap a little.)
    assert 0.5 + 0.25 <= went - started < 0.5 + 0.45


async def test_round_trips_are_compared_with_their_own_kind() -> None:
    limiter = SlidingWindow(1, 0.1, slack=0.005)

    async def one(kind: str, seconds: float) -> float:
        async with limiter.call(kind):
            started = time.monotonic()
            await asyncio.sleep(seconds)
        return started

    await one("small", 0.005)  # the fastest of all
    for _ in range(3):  # pages take longer, always
        await one("page", 0.06)
    page = await one("page", 0.06)
    after = await one("page", 0.005)
    # Against the fastest page, this page was not late: only the slack, not 55 ms.
    assert 0.105 <= after - page < 0.105 + 0.04


def test_window_limiter_holds_whole_calls() -> None:
    seven = window_limiter(7.5)
    assert (seven.limit, seven.period) == (7, 1.0)
    slow = window_limiter(0.5)
    assert (slow.limit, slow.period) == (1, 2.0)
    with pytest.raises(ValueError, match="rate must be positive"):
        window_limiter(0)
    with pytest.raises(ValueError, match="bad window"):
        SlidingWindow(0)
    with pytest.raises(ValueError, match="bad window"):
        SlidingWindow(7, 0.1, slack=0.5)


def test_windows_are_shared_per_host() -> None:
    limits = RateLimits()
    first = limits.window(amocrm_key("Acme.amocrm.ru"), 7)
    assert limits.window(amocrm_key("acme.amocrm.ru"), 7) is first
    assert limits.window(amocrm_key("beta.amocrm.ru"), 7) is not first
    assert len(limits) == 2
