"""The dashboard's browser session, CSRF tokens and security headers.

The admin token is typed once into the login form; the browser then keeps a session cookie
that is *derived* from the token, never the token itself:

    cookie = "v1.<issued>.<nonce>.<hex HMAC-SHA256(key=admin token, "session|issued|nonce")>"

so a leaked cookie does not leak the API token, every login gets a different cookie, the
cookie stops working when the admin token changes, and no server-side session table is
needed (any `serve` process can check it). A form's CSRF token is an HMAC of the cookie
under another label, so it is bound to the session it was rendered for.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from starlette.responses import Response

from amosync.crypto import same

COOKIE = "amosync_session"
# A session cookie ends with the browser session, but browsers that restore sessions keep
# it; an upper bound on its age keeps a forgotten laptop from being logged in forever.
MAX_AGE_SECONDS = 24 * 3600
_VERSION = "v1"

SECURITY_HEADERS = {
    # No inline script or style anywhere in the dashboard: everything comes from /static/.
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _sign(admin_token: str, label: str, message: str) -> str:
    return hmac.new(
        admin_token.encode(), f"amosync-dashboard|{label}|{message}".encode(), hashlib.sha256
    ).hexdigest()


@dataclass(frozen=True)
class DashboardSession:
    """A verified session cookie."""

    cookie: str
    issued_at: int

    def csrf_token(self, admin_token: str) -> str:
        return _sign(admin_token, "csrf", self.cookie)

    def check_csrf(self, admin_token: str, token: str | None) -> bool:
        return token is not None and same(self.csrf_token(admin_token), token)


def new_session_cookie(admin_token: str, *, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    nonce = secrets.token_urlsafe(16)
    signature = _sign(admin_token, "session", f"{issued}|{nonce}")
    return f"{_VERSION}.{issued}.{nonce}.{signature}"


def verify_session_cookie(
    admin_token: str, cookie: str | None, *, now: float | None = None
) -> DashboardSession | None:
    """The session the cookie carries, or None when it is absent, forged or too old."""
    if not cookie or len(cookie) > 256:
        return None
    parts = cookie.split(".")
    if len(parts) != 4 or parts[0] != _VERSION or not parts[1].isdigit():
        return None
    _, issued, nonce, signature = parts
    if not same(_sign(admin_token, "session", f"{issued}|{nonce}"), signature):
        return None
    age = (now if now is not None else time.time()) - int(issued)
    if not 0 <= age <= MAX_AGE_SECONDS:
        return None
    return DashboardSession(cookie=cookie, issued_at=int(issued))


def set_session_cookie(response: Response, value: str, *, secure: bool) -> None:
    # No max_age/expires: the cookie ends with the browser session.
    response.set_cookie(COOKIE, value, httponly=True, samesite="strict", secure=secure, path="/")


def clear_session_cookie(response: Response, *, secure: bool) -> None:
    response.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=secure, path="/")


def add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    # Pages carry account data for a logged-in operator: never keep them in a cache.
    response.headers.setdefault("Cache-Control", "no-store")
    return response
