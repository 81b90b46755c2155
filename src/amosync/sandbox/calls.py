"""The call log both simulators write: each request answered, each webhook posted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict, Unpack

Api = Literal["amocrm", "unisender", "webhook"]

# Beyond this many entries the oldest half of the call log is dropped, so a long benchmark
# cannot grow the sandbox without bound.
MAX_CALLS = 1_000_000


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


class CallFilter(TypedDict, total=False):
    """Which calls `CallLog.matching` keeps; a filter left out (or None) keeps every call."""

    api: Api | None
    path: str | None  # a prefix of the call's path
    status: int | None
    account_id: int | None


class CallLog(list[Call]):
    """The sandbox's call log: a plain list (so `sandbox.calls == []` works) plus helpers."""

    def record(self, call: Call) -> None:
        if len(self) >= MAX_CALLS:
            del self[: MAX_CALLS // 2]
        self.append(call)

    def count_where(self, **wanted: Unpack[CallFilter]) -> int:
        """How many calls match; `path` matches as a prefix."""
        return len(self.matching(**wanted))

    def matching(self, **wanted: Unpack[CallFilter]) -> list[Call]:
        api, path = wanted.get("api"), wanted.get("path")
        status, account_id = wanted.get("status"), wanted.get("account_id")
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
