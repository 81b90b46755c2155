"""What both simulators share: the call log, injected faults and rate-limit windows."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Api = Literal["amocrm", "unisender", "webhook"]

# Beyond this many entries the oldest half of the call log is dropped, so a long benchmark
# cannot grow the sandbox without bound.
MAX_CALLS = 1_000_000
# Arrival times kept per account (a 1,000,000-contact sync makes ~4,000 requests).
MAX_ARRIVALS = 100_000


@dataclass(frozen=True, slots=True)
class Call:
    """One request the sandbox answered (or, for `api="webhook"`, one delivery it made).

    `path` is the URL path (`/api/v4/contacts`, `/ru/api/importContacts`, or the webhook
    destination's path); `code` is Unisender's error code when it answered one.
    """

    api: Api
    method: str
    path: str
    status: int
    at: float  # unix time
    account_id: int | None = None
    code: str | None = None


class CallLog(list[Call]):
    """The sandbox's call log: a plain list (so `sandbox.calls == []` works) plus helpers."""

    def record(self, call: Call) -> None:
        if len(self) >= MAX_CALLS:
            del self[: MAX_CALLS // 2]
        self.append(call)

    def count_where(
        self,
        *,
        api: Api | None = None,
        path: str | None = None,
        status: int | None = None,
        account_id: int | None = None,
    ) -> int:
        """How many calls match; `path` matches as a prefix."""
        return len(self.matching(api=api, path=path, status=status, account_id=account_id))

    def matching(
        self,
        *,
        api: Api | None = None,
        path: str | None = None,
        status: int | None = None,
        account_id: int | None = None,
    ) -> list[Call]:
        return [
            call
            for call in self
            if (api is None or call.api == api)
            and (path is None or call.path.startswith(path))
            and (status is None or call.status == status)
            and (account_id is None or call.account_id == account_id)
        ]

    def by_path(self, api: Api | None = None) -> dict[str, int]:
        """Call counts per path, e.g. `{"/api/v4/contacts": 40, "/oauth2/access_token": 1}`."""
        counts: dict[str, int] = {}
        for call in self:
            if api is None or call.api == api:
                counts[call.path] = counts.get(call.path, 0) + 1
        return counts


@dataclass(slots=True)
class Fault:
    """Answer the next `times` requests whose path (or Unisender method) starts with `match`.

    For amoCRM, `status` is the HTTP status (body: a problem+json). For Unisender, either an
    HTTP `status` (e.g. 500, 503) or an error `code` delivered with HTTP 200 (`retry_later`).
    `times=None` keeps the fault until it is cleared. `applied` (amoCRM): the request is
    carried out first and only its answer is the fault, as when a timeout or a proxy's 5xx
    loses the answer to a request that did reach amoCRM.
    """

    match: str = ""
    status: int = 500
    code: str | None = None
    times: int | None = 1
    applied: bool = False

    def take(self, target: str) -> bool:
        """True (and one fewer to go) when this fault applies to `target`."""
        if not target.startswith(self.match) or self.times == 0:
            return False
        if self.times is not None:
            self.times -= 1
        return True


@dataclass
class FaultPlan:
    """Scripted faults first, then a random fault rate."""

    scripted: list[Fault] = field(default_factory=list)
    rate: float = 0.0
    rate_status: int = 500
    rate_code: str | None = None
    _random: random.Random = field(default_factory=lambda: random.Random(0))

    def add(self, fault: Fault) -> None:
        self.scripted.append(fault)

    def clear(self) -> None:
        self.scripted.clear()
        self.rate = 0.0

    def pick(self, target: str) -> Fault | None:
        for fault in self.scripted:
            if fault.take(target):
                self.scripted = [f for f in self.scripted if f.times != 0]
                return fault
        if self.rate and self._random.random() < self.rate:
            return Fault(match="", status=self.rate_status, code=self.rate_code, times=None)
        return None


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
