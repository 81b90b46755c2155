"""The retry policy for calls to amoCRM and Unisender, in one place.

Who retries what:

- The vendor clients retry *short* transient failures within one call: a 429, a 5xx, a
  timeout, a Unisender `retry_later`. A few attempts with exponential backoff and jitter,
  honouring `Retry-After`, bounded to seconds, so a blip never fails a sync batch.
- Whatever still fails after that surfaces as `TransientUpstreamError`, and the worker
  reschedules the job later (minutes). Nothing else retries, so attempts never multiply.
- Permanent failures (`PermanentUpstreamError` and its subclasses) are never retried here.

A `Retry-After` longer than the policy is willing to wait is not slept on: the error goes up
at once and the worker's own, longer schedule takes over.

Tests call `stamina.set_testing(True, attempts=N)`, which removes the waits.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import stamina

from amosync.errors import TransientUpstreamError

T = TypeVar("T")

# (api, outcome, seconds) for each HTTP attempt; outcome is one of OUTCOMES. Lets the app
# count upstream calls in its metrics without the clients importing the web layer.
CallObserver = Callable[[str, str, float], None]
OUTCOMES = ("ok", "unauthorized", "rate_limited", "transient", "permanent")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one upstream call tries before giving up to the worker."""

    attempts: int = 4  # including the first
    timeout: float = 60.0  # seconds for all attempts together
    wait_initial: float = 0.5
    wait_max: float = 8.0
    wait_jitter: float = 1.0
    # Retry-After values up to this are honoured in place; longer ones go to the worker.
    max_retry_after: float = 30.0


DEFAULT_POLICY = RetryPolicy()


def _backoff(policy: RetryPolicy) -> Callable[[BaseException], bool | float]:
    """stamina's hook: whether to retry `exc`, and how long to wait when upstream says so."""

    def hook(exc: BaseException) -> bool | float:
        if not isinstance(exc, TransientUpstreamError):
            return False
        if exc.retry_after is None:
            return True
        if exc.retry_after > policy.max_retry_after:
            return False
        # A little jitter so that clients told the same Retry-After do not return in step.
        return exc.retry_after + random.uniform(0, min(policy.wait_jitter, 1.0))  # noqa: S311

    return hook


async def with_retries(
    call: Callable[[], Awaitable[T]], *, policy: RetryPolicy = DEFAULT_POLICY
) -> T:
    """Await `call()`, retrying `TransientUpstreamError` as `policy` allows."""
    async for attempt in stamina.retry_context(
        on=_backoff(policy),
        attempts=policy.attempts,
        timeout=policy.timeout,
        wait_initial=policy.wait_initial,
        wait_max=policy.wait_max,
        wait_jitter=policy.wait_jitter,
    ):
        with attempt:
            return await call()
    raise AssertionError("stamina.retry_context ended without a result")  # pragma: no cover


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
