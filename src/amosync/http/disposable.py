"""amoCRM widget disposable tokens: the JWT a widget sends in `X-Auth-Token`.

amoCRM signs them with HS256 and the integration's secret key; `aud` is the base address of
the integration's redirect URI (scheme://host[:port]), and the payload names the account,
the user and the integration (`client_uuid`) the request comes from. They live a few
minutes, so `exp`, `nbf` and `iat` are all required and checked, with a little leeway for
clocks that disagree.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from amosync.errors import Unauthorized

ALGORITHM = "HS256"
LEEWAY_SECONDS = 30
DEFAULT_TTL_SECONDS = 15 * 60
INVALID = "invalid_widget_token"
EXPIRED = "widget_token_expired"


@dataclass(frozen=True)
class DisposableToken:
    """The verified claims of a widget token."""

    account_id: int
    user_id: int | None
    client_uuid: str | None  # the integration's client_id
    subdomain: str | None
    issuer: str | None  # the account's address, e.g. https://acme.amocrm.ru
    token_id: str | None  # jti
    expires_at: int  # unix seconds


def verify_disposable_token(
    token: str, *, secret: str, audience: str, leeway: float = LEEWAY_SECONDS
) -> DisposableToken:
    """The token's claims, or `Unauthorized` saying what is wrong with it."""
    # Accept the origin with or without a trailing slash: both name the same address.
    audiences = [audience.rstrip("/"), audience.rstrip("/") + "/"]
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=audiences,
            leeway=leeway,
            options={"require": ["exp", "nbf", "iat", "aud", "account_id"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized(
            "the widget token has expired; reload the amoCRM page", code=EXPIRED
        ) from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(_what_is_wrong(exc, audience), code=INVALID) from exc
    return DisposableToken(
        account_id=_int_claim(claims, "account_id"),
        user_id=_optional_int(claims.get("user_id")),
        client_uuid=_optional_str(claims.get("client_uuid")),
        subdomain=_optional_str(claims.get("subdomain")),
        issuer=_optional_str(claims.get("iss")),
        token_id=_optional_str(claims.get("jti")),
        expires_at=int(claims["exp"]),
    )


def _what_is_wrong(exc: jwt.InvalidTokenError, audience: str) -> str:
    """What a person can read of PyJWT's refusal (the most specific class first)."""
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the widget token is not valid yet (nbf/iat in the future); check the clock"
    if isinstance(exc, jwt.InvalidIssuedAtError):
        return "the widget token's 'iat' is not a timestamp"
    if isinstance(exc, jwt.InvalidAudienceError):
        return f"the widget token is for another integration address (expected aud {audience})"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the widget token lacks the '{exc.claim}' claim"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the widget token's signature does not match this integration's secret key"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return f"the widget token must be signed with {ALGORITHM}"
    return f"the widget token is malformed: {exc}"


def issue_disposable_token(
    *,
    secret: str,
    audience: str,
    account_id: int,
    ttl: float = DEFAULT_TTL_SECONDS,
    user_id: int | None = None,
    subdomain: str | None = None,
    client_uuid: str | None = None,
    now: float | None = None,
) -> str:
    """A token shaped like amoCRM's, for tests, the demo and the sandbox."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "aud": audience,
        "jti": str(uuid.uuid4()),
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl),
        "account_id": account_id,
    }
    if subdomain is not None:
        claims["subdomain"] = subdomain
        claims["iss"] = f"https://{subdomain}.amocrm.ru"
    if user_id is not None:
        claims["user_id"] = user_id
    if client_uuid is not None:
        claims["client_uuid"] = client_uuid
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def _int_claim(claims: dict[str, Any], name: str) -> int:
    value = _optional_int(claims.get(name))
    if value is None:
        raise Unauthorized(f"the widget token's '{name}' is not a number", code=INVALID)
    return value


def _optional_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
