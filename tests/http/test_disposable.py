"""Widget disposable tokens (X-Auth-Token): what is accepted and what is refused, and why."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from amosync.errors import Unauthorized
from amosync.http.disposable import (
    EXPIRED,
    INVALID,
    issue_disposable_token,
    verify_disposable_token,
)

SECRET = "test-integration-secret-" + "0123456789abcdef" * 3  # amoCRM secrets are 64 chars
AUDIENCE = "https://amosync.example:8443"


def signed(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def amocrm_claims(**overrides: Any) -> dict[str, Any]:
    """The claims amoCRM puts in a widget token."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "https://acme.amocrm.ru",
        "aud": AUDIENCE,
        "jti": "5a0d2c70-55f7-4f5a-9f6a-2c7a3c1d2e3f",
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "account_id": 30896271,
        "subdomain": "acme",
        "client_uuid": "3d9d7b4e-0b2a-4c55-9e1f-6c3b1c2a9d10",
        "user_id": 8145061,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def refusal(token: str, **kwargs: Any) -> Unauthorized:
    with pytest.raises(Unauthorized) as caught:
        verify_disposable_token(token, secret=SECRET, audience=AUDIENCE, **kwargs)
    assert caught.value.status == 401
    return caught.value


def test_amocrm_token_is_accepted_with_its_claims() -> None:
    claims = amocrm_claims()
    verified = verify_disposable_token(signed(claims), secret=SECRET, audience=AUDIENCE)

    assert verified.account_id == 30896271
    assert verified.user_id == 8145061
    assert verified.subdomain == "acme"
    assert verified.client_uuid == claims["client_uuid"]
    assert verified.issuer == "https://acme.amocrm.ru"
    assert verified.token_id == claims["jti"]
    assert verified.expires_at == claims["exp"]


def test_issued_token_round_trips() -> None:
    token = issue_disposable_token(
        secret=SECRET, audience=AUDIENCE, account_id=42, user_id=7, subdomain="demo"
    )
    verified = verify_disposable_token(token, secret=SECRET, audience=AUDIENCE)
    assert (verified.account_id, verified.user_id, verified.subdomain) == (42, 7, "demo")


def test_audience_with_trailing_slash_is_the_same_origin() -> None:
    token = signed(amocrm_claims(aud=AUDIENCE + "/"))
    assert verify_disposable_token(token, secret=SECRET, audience=AUDIENCE).account_id == 30896271


def test_expired_token() -> None:
    past = int(time.time()) - 3600
    error = refusal(signed(amocrm_claims(iat=past - 900, nbf=past - 900, exp=past)))
    assert error.code == EXPIRED
    assert "expired" in error.detail


def test_just_expired_token_is_within_leeway() -> None:
    now = int(time.time())
    token = signed(amocrm_claims(iat=now - 910, nbf=now - 910, exp=now - 10))
    assert verify_disposable_token(token, secret=SECRET, audience=AUDIENCE).account_id
    refusal(token, leeway=0)


def test_not_yet_valid_token() -> None:
    future = int(time.time()) + 3600
    error = refusal(signed(amocrm_claims(nbf=future, exp=future + 900)))
    assert error.code == INVALID
    assert "not valid yet" in error.detail


def test_token_issued_in_the_future() -> None:
    future = int(time.time()) + 3600
    error = refusal(signed(amocrm_claims(iat=future, exp=future + 900)))
    assert "not valid yet" in error.detail


def test_bad_signature() -> None:
    error = refusal(signed(amocrm_claims(), secret="x" * 64))
    assert error.code == INVALID
    assert "signature" in error.detail


def test_wrong_audience() -> None:
    error = refusal(signed(amocrm_claims(aud="https://other-integration.example")))
    assert "another integration address" in error.detail
    assert AUDIENCE in error.detail


@pytest.mark.parametrize("claim", ["account_id", "exp", "nbf", "iat", "aud"])
def test_missing_required_claim(claim: str) -> None:
    claims = amocrm_claims()
    del claims[claim]
    error = refusal(signed(claims))
    assert f"'{claim}'" in error.detail


def test_account_id_must_be_a_number() -> None:
    error = refusal(signed(amocrm_claims(account_id="acme")))
    assert "account_id" in error.detail


def test_unsigned_token_is_refused() -> None:
    error = refusal(jwt.encode(amocrm_claims(), "", algorithm="none"))
    assert error.code == INVALID


def test_other_algorithm_is_refused() -> None:
    refusal(signed(amocrm_claims(), algorithm="HS512"))


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c"])
def test_garbage_is_malformed(token: str) -> None:
    error = refusal(token)
    assert error.code == INVALID
