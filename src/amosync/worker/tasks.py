"""The task registry: each domain declares its jobs here, the worker runs what is registered.

A `Task` carries its job kind (the `jobs.kind` column: existing rows name it, so a kind is
never renamed), the dataclass of its arguments, how its dedupe key is made and its retry
budget. Callers queue with `await TASK.enqueue(session, Args(...))`, so no kind or dedupe
string is written outside the task's declaration. A domain's `tasks.py` declares its tasks;
the function that runs one is attached with `@TASK.runs`, beside the declaration or in the
workflow module it belongs to (a workflow that queues its own kind again, as a full sync's
retry does, would otherwise import its tasks module in a cycle). The module that builds
the worker (the app factory, the command line) imports the domains' job modules, so every
kind has its handler before a job is claimed.

The worker knows no domain: what it must ask of the accounts' problems (is amoCRM's block
still on, what does a permanent failure mean for the account) is a set of `AccountHooks`
the accounts domain registers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from amosync.worker.context import Handler, JobContext
from amosync.worker.queue import enqueue, job_values


class JobArgs(Protocol):
    """A task's arguments: a dataclass whose fields other than `account_id` are the payload."""

    @property
    def account_id(self) -> int | None: ...


A = TypeVar("A", bound=JobArgs)


@dataclass(frozen=True)
class AccountJob:
    """The arguments of a job that needs nothing but its account."""

    account_id: int


def _fields(args: type[Any]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(args))


def _payload_fields(args: type[Any]) -> tuple[str, ...]:
    return tuple(name for name in _fields(args) if name != "account_id")


@dataclass(eq=False)
class Task(Generic[A]):
    kind: str
    args: type[A]
    # The key that makes a second job of the same work join the pending one; None: no dedupe.
    dedupe: Callable[[A], str] | None = None
    max_attempts: int = 8
    # Seconds before a queued job is due, unless `enqueue` says otherwise.
    delay: float = 0.0
    handler: Handler | None = None

    def __post_init__(self) -> None:
        if self.kind in _TASKS:
            raise ValueError(f"job kind {self.kind!r} is declared twice")
        _TASKS[self.kind] = self

    def runs(self, handler: Handler) -> Handler:
        """Attach the function that runs this task's jobs (a decorator)."""
        self.handler = handler
        return handler

    def payload(self, job: A) -> dict[str, Any]:
        return {name: getattr(job, name) for name in _payload_fields(self.args)}

    def load(self, ctx: JobContext) -> A:
        """The job's arguments, read back from its row (keys a handler added are left out)."""
        payload = ctx.payload
        values = {name: payload[name] for name in _payload_fields(self.args) if name in payload}
        if "account_id" in _fields(self.args):
            values["account_id"] = ctx.account_id
        return self.args(**values)

    def values(self, job: A) -> dict[str, Any]:
        """The row of the job (for callers that insert jobs in bulk on a Core connection)."""
        return job_values(
            self.kind,
            account_id=job.account_id,
            payload=self.payload(job) or None,
            dedupe_key=self.dedupe(job) if self.dedupe else None,
            delay=self.delay,
            max_attempts=self.max_attempts,
        )

    async def enqueue(self, session: AsyncSession, job: A, *, delay: float | None = None) -> None:
        """Queue the job in the caller's transaction; with a dedupe key, joins the pending one."""
        await enqueue(
            session,
            self.kind,
            account_id=job.account_id,
            payload=self.payload(job) or None,
            dedupe_key=self.dedupe(job) if self.dedupe else None,
            delay=self.delay if delay is None else delay,
            max_attempts=self.max_attempts,
        )


_TASKS: dict[str, Task[Any]] = {}


def per_account(kind: str) -> Callable[[JobArgs], str]:
    """The usual dedupe key: one pending job of the kind per account."""
    return lambda job: f"{kind}:{job.account_id}"


def registered() -> dict[str, Handler]:
    """The handlers by job kind, as the worker runs them."""
    return {kind: t.handler for kind, t in _TASKS.items() if t.handler is not None}


async def _no_block(
    session: AsyncSession,  # noqa: ARG001 - hook signature
    account_id: int,  # noqa: ARG001
    cause: BaseException,  # noqa: ARG001
) -> BaseException | None:
    return None


async def _nothing(*_: Any) -> None:
    return None


@dataclass(frozen=True)
class AccountHooks:
    """What the worker asks of the domain that keeps the accounts' problems.

    The defaults do nothing, so a worker with no domain loaded (its own tests) still runs.
    """

    # The problem code of amoCRM's block: its jobs are not claimed while it lasts.
    blocked_code: str | None = None
    # A failure as amoCRM's block when the account is still under one, else None.
    still_blocked: Callable[[AsyncSession, int, BaseException], Awaitable[BaseException | None]] = (
        _no_block
    )
    # The failure as a person reads it (the job's `last_error`).
    describe: Callable[[BaseException], str] = str
    # Mark the account with what a permanent failure means for it.
    note_failure: Callable[[AsyncSession, int, BaseException], Awaitable[None]] = _nothing
    # Record amoCRM's block (account, detail, until) and forget it once a job ran to the end.
    set_blocked: Callable[[AsyncSession, int, str, datetime], Awaitable[None]] = _nothing
    clear_blocked: Callable[[AsyncSession, int], Awaitable[None]] = _nothing


_HOOKS: list[AccountHooks] = [AccountHooks()]


def register_account_hooks(hooks: AccountHooks) -> None:
    _HOOKS[0] = hooks


def account_hooks() -> AccountHooks:
    return _HOOKS[0]
