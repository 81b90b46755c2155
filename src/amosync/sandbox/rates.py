"""Rate-limit windows and the arrival times tests and benchmarks measure them by."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

# Arrival times kept per account (a 1,000,000-contact sync makes ~4,000 requests).
MAX_ARRIVALS = 100_000


class RateWindow:
    """A sliding-window limit: at most `limit` admitted calls per `period` seconds."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._admitted: deque[float] = deque()

    def admit(self, limit: float | None) -> bool:
        """Record a call and return True, or return False when the window is full."""
        if limit is None:
            return True
        now = time.monotonic()
        while self._admitted and now - self._admitted[0] >= self.period:
            self._admitted.popleft()
        if len(self._admitted) >= limit:
            return False
        self._admitted.append(now)
        return True


def max_in_window(times: Sequence[float], period: float = 1.0) -> int:
    """The most of `times` that fall in any half-open window `[t, t + period)`.

    The half-open window is the one `RateWindow` enforces: a call `period` seconds after an
    earlier one no longer shares its window.
    """
    ordered = sorted(times)
    most = 0
    first = 0
    for last, at in enumerate(ordered):
        while at - ordered[first] >= period:
            first += 1
        most = max(most, last - first + 1)
    return most


def shortest_span(times: Sequence[float], count: int) -> float | None:
    """The shortest time that `count` consecutive `times` span (None: fewer than `count`).

    With a limit of `n` per second, the span of `n + 1` consecutive arrivals is the slack
    left: at least 1 s means no window ever held more than `n`.
    """
    ordered = sorted(times)
    if count < 2 or len(ordered) < count:
        return None
    return min(ordered[i + count - 1] - ordered[i] for i in range(len(ordered) - count + 1))


class Arrivals:
    """When one account's requests reached the sandbox (unix time), the rejected ones too.

    Tests and benchmarks read from it the most requests any 1-second window held, which is
    what amoCRM's limit is about, whether or not the sandbox's own limit is switched on.
    """

    def __init__(self) -> None:
        self._times: deque[float] = deque(maxlen=MAX_ARRIVALS)

    def record(self, at: float | None = None) -> None:
        self._times.append(time.time() if at is None else at)

    def since(self, since: float | None = None) -> list[float]:
        """The arrival times from `since` on (unix time; None: all kept)."""
        if since is None:
            return list(self._times)
        return [at for at in self._times if at >= since]

    def max_in_window(self, period: float = 1.0, since: float | None = None) -> int:
        return max_in_window(self.since(since), period)

    def clear(self) -> None:
        self._times.clear()

    def __len__(self) -> int:
        return len(self._times)
