"""The error tree: `root_cause` (the error an ExceptionGroup stands for), `is_permanent`, and
the status and code each `AppError` states in its bases."""

from __future__ import annotations

import pytest

from amosync.errors import (
    AccountGone,
    AmoCRMBlocked,
    AppError,
    AuthorizationRevoked,
    BadRequest,
    Conflict,
    Forbidden,
    InvalidApiKey,
    NotFound,
    TransientUpstreamError,
    Unauthorized,
    UnknownJob,
    is_permanent,
    root_cause,
)


def test_a_plain_error_is_its_own_cause() -> None:
    error = ValueError("x")
    assert root_cause(error) is error


def test_a_permanent_error_wins_over_transient_ones_at_any_depth() -> None:
    transient = TransientUpstreamError("slow", api="amocrm")
    key = InvalidApiKey("refused", api="unisender")
    group = ExceptionGroup("stages", [transient, ExceptionGroup("inner", [ValueError(), key])])
    assert root_cause(group) is key


def test_a_revoked_authorization_wins_over_a_dead_key_and_a_block_over_transient() -> None:
    revoked = AuthorizationRevoked("revoked", api="amocrm")
    key = InvalidApiKey("refused", api="unisender")
    assert root_cause(ExceptionGroup("g", [key, revoked])) is revoked
    blocked = AmoCRMBlocked("blocked", api="amocrm", status=403)
    transient = TransientUpstreamError("slow", api="amocrm")
    assert root_cause(ExceptionGroup("g", [transient, blocked])) is blocked


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (BadRequest, 400, "bad_request"),
        (Unauthorized, 401, "unauthorized"),
        (Forbidden, 403, "forbidden"),
        (NotFound, 404, "not_found"),
        (Conflict, 409, "conflict"),
    ],
)
def test_each_app_error_has_its_status_and_code_and_one_raise_may_override_them(
    error: type[AppError], status: int, code: str
) -> None:
    plain = error("what went wrong")
    assert (plain.status, plain.code, plain.detail) == (status, code, "what went wrong")
    named = error("no such list", code="unknown_list", status=422)
    assert (named.status, named.code) == (422, "unknown_list")
    assert (error.status, error.code) == (status, code)  # the class keeps its defaults


def test_work_amosync_stopped_itself_is_permanent_and_ranks_with_refusals() -> None:
    gone = AccountGone("account 5 is disconnected")
    unknown = UnknownJob("no task runs jobs of kind 'x'")
    assert is_permanent(gone)
    assert is_permanent(unknown)
    assert not is_permanent(TransientUpstreamError("slow", api="amocrm"))
    transient = TransientUpstreamError("slow", api="unisender")
    blocked = AmoCRMBlocked("blocked", api="amocrm", status=403)
    assert root_cause(ExceptionGroup("g", [transient, blocked, gone])) is gone
    revoked = AuthorizationRevoked("revoked", api="amocrm")
    assert root_cause(ExceptionGroup("g", [gone, revoked])) is revoked
