"""`root_cause`: the error an ExceptionGroup stands for."""

from __future__ import annotations

from amosync.errors import (
    AmoCRMBlocked,
    AuthorizationRevoked,
    InvalidApiKey,
    TransientUpstreamError,
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
