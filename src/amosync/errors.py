"""The errors amosync raises, in one tree.

    AppError                    rendered as {"error": code, "detail": detail} with its status
    ├── BadRequest              400
    ├── Unauthorized            401
    ├── Forbidden               403
    ├── NotFound                404
    └── Conflict                409
    UpstreamError               a call to amoCRM or Unisender failed
    ├── TransientUpstreamError  worth retrying later: 5xx, timeouts, 429, rate-limit codes
    ├── AmoCRMBlocked           amoCRM blocked the integration for a while (403 after 429s):
    │                           not retried in place; the worker pauses the account, resumes
    └── PermanentUpstreamError  retrying will not help: bad key, invalid argument, other 4xx
        ├── AuthorizationRevoked    amoCRM refused the refresh token: the account needs re-auth
        └── InvalidApiKey           Unisender refused the API key
    WorkStopped                 work cannot go on for a reason of amosync's own, not a vendor's;
    │                           permanent like a refusal, but no vendor said anything
    ├── AccountGone             the account was disconnected or deleted while its work ran
    └── UnknownJob              a job of a kind no task runs (queued by another release)

An `UpstreamError` carries the API name, the HTTP status and the (secret-free) body, so a
log line or a failed job can say what happened without anyone re-running the call.

Work that runs in a TaskGroup fails with an `ExceptionGroup`; `root_cause` picks the error
that decides what happens next (a permanent one over a block over a transient one), so no
`except` has to know about groups.
"""

from __future__ import annotations


class AppError(Exception):
    """An expected failure with an HTTP status and a snake_case code; a subclass states its
    defaults in its bases (`class NotFound(AppError, status=404, code="not_found")`)."""

    status: int = 400
    code: str = "bad_request"

    def __init_subclass__(cls, *, status: int | None = None, code: str | None = None) -> None:
        super().__init_subclass__()
        if status is not None:
            cls.status = status
        if code is not None:
            cls.code = code

    def __init__(self, detail: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class BadRequest(AppError, status=400, code="bad_request"):
    """The request itself is wrong: a field missing or malformed."""


class Unauthorized(AppError, status=401, code="unauthorized"):
    """No credentials, or ones that do not hold."""


class Forbidden(AppError, status=403, code="forbidden"):
    """Credentials that hold, for something they do not allow."""


class NotFound(AppError, status=404, code="not_found"):
    """No such account, integration or resource."""


class Conflict(AppError, status=409, code="conflict"):
    """The resource is in a state that refuses the request (a sync already running...)."""


class UpstreamError(Exception):
    """A call to amoCRM or Unisender failed."""

    def __init__(
        self,
        message: str,
        *,
        api: str,
        status: int | None = None,
        code: str | None = None,
        body: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.api = api
        self.status = status
        self.code = code
        self.body = body
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = [f"{self.api}: {self.message}"]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.code:
            parts.append(f"code={self.code}")
        return " ".join(parts)


class TransientUpstreamError(UpstreamError):
    """Worth retrying later."""


class PermanentUpstreamError(UpstreamError):
    """Retrying the same call will not help."""


class AuthorizationRevoked(PermanentUpstreamError):
    """amoCRM refused the refresh token or the code: the account must be installed again."""


class InvalidApiKey(PermanentUpstreamError):
    """Unisender refused the API key."""


class AmoCRMBlocked(UpstreamError):
    """amoCRM answered 403 after rate-limit errors: it blocks an integration that keeps
    exceeding its limit for a while. Neither transient (retrying now prolongs the block) nor
    permanent (the block ends by itself): the account waits a long pause, then resumes."""


class WorkStopped(Exception):
    """Work that cannot go on for a reason of amosync's own: no vendor refused anything, and
    retrying will not help either."""


class AccountGone(WorkStopped):
    """The account was disconnected or deleted while its work was running."""


class UnknownJob(WorkStopped):
    """A job of a kind no registered task runs (queued by another release of the service)."""


def root_cause(exc: BaseException) -> BaseException:
    """The error behind `exc`: itself, or for an exception group the leaf that matters most
    (permanent, then a block, then transient, then anything else; the first of a rank)."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves = [root_cause(inner) for inner in exc.exceptions]
    return min(leaves, key=_rank) if leaves else exc


def _rank(exc: BaseException) -> int:
    if isinstance(exc, AuthorizationRevoked):
        return 0
    if isinstance(exc, InvalidApiKey):
        return 1
    if isinstance(exc, (PermanentUpstreamError, WorkStopped)):
        return 2
    if isinstance(exc, AmoCRMBlocked):
        return 3
    if isinstance(exc, TransientUpstreamError):
        return 4
    return 5


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying the work that raised `exc` cannot help: a permanent upstream error,
    work stopped by amosync itself, or one of ours for bad input or state (a 4xx `AppError`:
    no key connected, no public URL set...), which only a person's change fixes."""
    if isinstance(exc, (PermanentUpstreamError, WorkStopped)):
        return True
    return isinstance(exc, AppError) and exc.status < 500
