"""The dashboard's browser session, CSRF tokens and security headers.

The admin token is typed once into the login form; the browser then keeps a session cookie
that is *derived* from the token, never the token itself:

    cookie = "v1.<issued>.<nonce>.<hex HMAC-SHA256(key=admin token, "session|issued|nonce")>"

so a leaked cookie does not leak the API token, every login gets a different cookie, and
the cookie stops working when the admin token changes. A signature alone cannot be taken
back, though: each login also stores the cookie's hash in `dashboard_sessions`, a session
is only one while its row is there (in any `serve` process: the table is shared), and
logging out deletes it, so a logged-out cookie replayed opens nothing. A form's CSRF token
is an HMAC of the cookie under another label, so it is bound to the session it was
rendered for.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from amosync.db.models import DashboardSession as SessionRow
from amosync.db.models import utcnow
from amosync.runtime.crypto import same, token_hash

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


async def open_session(db: AsyncSession, admin_token: str) -> str:
    """A new session: its cookie, stored (as a hash) until it expires or is logged out."""
    now = utcnow()
    cookie = new_session_cookie(admin_token, now=now.timestamp())
    # Sessions nobody logged out of are forgotten once they have expired.
    await db.execute(delete(SessionRow).where(SessionRow.expires_at < now))
    db.add(
        SessionRow(
            id=token_hash(cookie),
            created_at=now,
            expires_at=now + timedelta(seconds=MAX_AGE_SECONDS),
        )
    )
    await db.flush()
    return cookie


async def session_of(
    db: AsyncSession, admin_token: str, cookie: str | None
) -> DashboardSession | None:
    """The session of a cookie that is signed, not too old and not logged out; else None."""
    verified = verify_session_cookie(admin_token, cookie)
    if verified is None:
        return None
    row = await db.get(SessionRow, token_hash(verified.cookie))
    if row is None or row.expires_at <= utcnow():
        return None
    return verified


async def end_session(db: AsyncSession, session: DashboardSession) -> None:
    """Log out: the session's cookie opens nothing from now on."""
    await db.execute(delete(SessionRow).where(SessionRow.id == token_hash(session.cookie)))


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
