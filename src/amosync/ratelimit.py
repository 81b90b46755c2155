"""Per-account and per-key request pacing, shared by everything in one process.

amoCRM allows 7 requests per second per account and Unisender 1200 calls per minute per API
key. Every client that talks to the same account or key must draw from the same limiter, so
the process builds one `RateLimits` at start-up (see `amosync.state`) and hands it around.

The limit is per process: several `amosync worker` processes each pace themselves, and the
429 / `api_call_limit_exceeded_*` handling in the clients absorbs what they add up to.
"""

from __future__ import annotations

import hashlib

from aiolimiter import AsyncLimiter

# amoCRM counts requests per any 1-second window, measured when they *arrive*. We can only
# control when they leave, and network or event-loop delay can push an early request later
# while a later one arrives on time, squeezing one more into the server's window. Spacing
# calls 5% wider than 1/rate tolerates 50 ms of such skew at 7 rps (3 s at 1200/minute).
SPACING_MARGIN = 1.05


def secret_key(prefix: str, secret: str) -> str:
    """A registry key for a secret (a Unisender API key): a hash, never the secret itself."""
    digest = hashlib.sha256(secret.encode()).hexdigest()[:16]
    return f"{prefix}:{digest}"


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
    """A registry of limiters keyed by what is limited, e.g. ``amocrm:30896271``.

    Limiters are created on first use with the rate given then; later calls with the same
    key get the same limiter whatever rate they pass. Keys must never contain a secret: use
    `secret_key()` for API keys.
    """

    def __init__(self) -> None:
        self._limiters: dict[str, AsyncLimiter] = {}

    def get(self, key: str, rate: float) -> AsyncLimiter:
        """The limiter for `key`, allowing `rate` calls per second."""
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = make_limiter(rate)
        return limiter

    def __len__(self) -> int:
        return len(self._limiters)
