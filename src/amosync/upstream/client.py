"""The HTTP base both vendor clients are built on (`amosync.amocrm.client`,
`amosync.unisender.client`): what a call to either vendor does whatever the vendor.

- It owns the `httpx.AsyncClient` it made, and closes only that one (a shared one given
  to the constructor is the caller's); every request has the client's explicit timeout.
- Each attempt waits for the rate limiter (`amosync.upstream.ratelimit.paced`), and tells a
  `SlidingWindow` when the answer's headers are in.
- A timeout or a transport failure is a `TransientUpstreamError`; a 429 or a 5xx answer is
  one too, with the `Retry-After` to honour (`transient_answer`); `with_retries` retries
  them as the client's `RetryPolicy` allows.
- Each attempt is reported to the `CallObserver` (the app's metrics) with its outcome and
  its duration, the wait for the limit left out.
- Neither the client's repr nor an error carries a secret: bodies go through
  `body_excerpt`.

What stays with each vendor: authentication (amoCRM's bearer token and its refresh,
Unisender's key in the body), and what an answer means (`_outcome`, the error it stands
for).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import ClassVar, Self, TypedDict, TypeVar

import httpx

from amosync.errors import TransientUpstreamError, UpstreamError
from amosync.upstream.ratelimit import Limiter, paced
from amosync.upstream.redact import body_excerpt
from amosync.upstream.retry import (
    DEFAULT_POLICY,
    CallObserver,
    RetryPolicy,
    parse_retry_after,
    with_retries,
)

T = TypeVar("T")


class ClientOptions(TypedDict, total=False):
    """How a vendor client calls, whatever the vendor (keyword arguments of both)."""

    # The process's shared client; without one, the client makes its own and closes it.
    http: httpx.AsyncClient | None
    timeout: float  # seconds a request may take; by default the vendor's `default_timeout`
    retry_policy: RetryPolicy
    observer: CallObserver | None


class UpstreamClient:
    """A vendor's API at `base_url`, paced by `limiter`; a subclass names its `api`, its
    `default_timeout` and the error codes that mean it is rate limited."""

    api: ClassVar[str]
    default_timeout: ClassVar[float]
    rate_limit_codes: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        base_url: str,
        limiter: Limiter,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float | None = None,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
        observer: CallObserver | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._limiter = limiter
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient()
        self._timeout = httpx.Timeout(self.default_timeout if timeout is None else timeout)
        self._policy = retry_policy
        self._observer = observer

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"  # never a token or a key

    @property
    def limiter(self) -> Limiter:
        """The rate limit this client waits on."""
        return self._limiter

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this client created it."""
        if self._owns_http:
            await self._http.aclose()

    async def _retried(
        self, attempt: Callable[[], Awaitable[T]], policy: RetryPolicy | None = None
    ) -> T:
        """`attempt()`, retried as `policy` (by default the client's) allows."""
        return await with_retries(attempt, policy=policy or self._policy)

    async def _send(
        self, request: httpx.Request, what: str, read: Callable[[httpx.Response], T]
    ) -> T:
        """One attempt at `request` (`what` names it in errors and to the limiter): its
        answer as `read` takes it, or the `UpstreamError` `read` raises for it."""
        started = time.monotonic()
        try:
            async with paced(self._limiter, what) as slot:
                started = time.monotonic()  # the call's duration, not the wait for the limit
                with transport_errors(what, self.api):
                    response = await self._http.send(request, stream=True)
                    # The headers are in, so the request had reached the vendor: the
                    # limiter's bound on when it was counted (the body may take longer).
                    slot.answer()
                    try:
                        await response.aread()
                    finally:
                        await response.aclose()
        except TransientUpstreamError:
            self._observe("transient", started)
            raise
        try:
            result = read(response)
        except UpstreamError as exc:
            self._observe(self._outcome(response, exc), started)
            raise
        self._observe(self._outcome(response, None), started)
        return result

    def _outcome(self, response: httpx.Response, error: UpstreamError | None) -> str:
        """The attempt's outcome for the observer (one of `retry.OUTCOMES`): from the error
        `read` raised for the answer, or else from its status."""
        if error is not None:
            if error.status == 429 or error.code in self.rate_limit_codes:
                return "rate_limited"
            return "transient" if isinstance(error, TransientUpstreamError) else "permanent"
        status = response.status_code
        if status < 400:
            return "ok"
        if status == 401:  # the caller refreshes its token: not (yet) an error of the call
            return "unauthorized"
        if status == 429:
            return "rate_limited"
        return "transient" if status >= 500 else "permanent"

    def _observe(self, outcome: str, started: float) -> None:
        if self._observer is not None:
            self._observer(self.api, outcome, time.monotonic() - started)


@contextmanager
def transport_errors(what: str, api: str) -> Iterator[None]:
    """A timeout or a failed connection in the block, as the `TransientUpstreamError` it is."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise TransientUpstreamError(f"{what} timed out", api=api) from exc
    except httpx.TransportError as exc:
        raise TransientUpstreamError(
            f"{what} failed: {type(exc).__name__}: {exc}", api=api
        ) from exc


def transient_answer(message: str, api: str, response: httpx.Response) -> TransientUpstreamError:
    """The error for a 429 or a 5xx answer: worth retrying, after its `Retry-After` if any."""
    return TransientUpstreamError(
        message,
        api=api,
        status=response.status_code,
        body=body_excerpt(response.text),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )
