"""amoCRM tokens kept in the database, refreshed single-flight across processes.

amoCRM refresh tokens are single-use: if two workers spent the same one, the second would get
"Token has been revoked" and the account would need a re-install. So a refresh first takes a
lock on the integration row with a compare-and-swap (`refresh_lock_owner/_until`, valid only
while `token_version` is unchanged); the winner refreshes and stores the new pair with
`token_version + 1` in one statement; everyone else waits for the version to move and reads
the new pair. The same code path works on SQLite and PostgreSQL.

A token is refreshed `refresh_margin()` before it expires, and the refresh waits for the
account's rate limit like any other request to its host.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import jwt
import structlog

from amosync.accounts import repository
from amosync.amocrm.client import AmoCRMClient, refresh_tokens
from amosync.db.engine import transaction
from amosync.db.models import utcnow
from amosync.errors import AuthorizationRevoked, PermanentUpstreamError, TransientUpstreamError
from amosync.runtime.metrics import observe_upstream
from amosync.runtime.services import Services
from amosync.upstream.ratelimit import SlidingWindow, amocrm_key

log = structlog.get_logger()

# Refresh this long before expiry, so a long page fetch never starts with a dying token...
REFRESH_MARGIN = timedelta(minutes=5)
# ...but never more than this share of the token's lifetime: a token of 5 minutes or less
# would be due for a refresh as soon as it is issued, i.e. before every call. A quarter of
# a 60-s token still covers a request's 15-s timeout.
REFRESH_SHARE = 0.25
LOCK_SECONDS = 30.0
WAIT_STEP = 0.05


@dataclass
class _Current:
    integration_id: int
    version: int
    access_token: str | None
    refresh_token: str | None
    expires_at: datetime | None
    client_id: str
    client_secret: str | None
    redirect_uri: str | None
    base_url: str
    host: str | None  # the account's own host, where its rate limit applies
    stored_at: datetime  # when the row was last written: no earlier than the pair's issue

    def expiring(self) -> bool:
        """True when the access token is within its refresh margin of expiry."""
        if self.expires_at is None:
            return False
        lifetime = token_lifetime(self.access_token) or self.expires_at - self.stored_at
        return self.expires_at - utcnow() < refresh_margin(lifetime)


def refresh_margin(lifetime: timedelta) -> timedelta:
    """How long before expiry a token of this lifetime is refreshed."""
    return max(timedelta(0), min(REFRESH_MARGIN, lifetime * REFRESH_SHARE))


def token_lifetime(access_token: str | None) -> timedelta | None:
    """`exp - iat` of an access token that is a JWT, as amoCRM's are; None if unreadable.

    Only the lifetime is read (two times of amoCRM's clock, so its skew cancels out); the
    signature is amoCRM's business. Without it, `_Current.expiring` falls back to the time
    between the row's last write and the expiry, which can only be shorter.
    """
    if not access_token:
        return None
    try:
        claims = jwt.decode(access_token, options={"verify_signature": False})
        issued, expires = claims["iat"], claims["exp"]
        lifetime = datetime.fromtimestamp(expires, UTC) - datetime.fromtimestamp(issued, UTC)
    except (jwt.InvalidTokenError, KeyError, TypeError, ValueError, OverflowError, OSError):
        return None
    return lifetime if lifetime > timedelta(0) else None


class DbTokenSource:
    """The `TokenSource` of one account's amoCRM client."""

    def __init__(self, services: Services, account_id: int, owner: str | None = None) -> None:
        self.services = services
        self.account_id = account_id
        self.owner = owner or uuid.uuid4().hex
        self._cached: _Current | None = None

    async def _load(self) -> _Current:
        async with self.services.sessions() as session:
            integration = await repository.integration(session, self.account_id, None)
        if integration is None:
            # Installed through the widget a moment ago: the install job has not stored the
            # tokens yet. Worth retrying.
            raise TransientUpstreamError(
                f"account {self.account_id} is still being installed", api="amocrm"
            )
        if integration.access_token_enc is None:
            raise AuthorizationRevoked(
                f"account {self.account_id} has no amoCRM tokens", api="amocrm"
            )
        cipher = self.services.cipher
        settings = self.services.settings
        client_secret = cipher.decrypt_optional(integration.client_secret_enc)
        if client_secret is None and integration.client_id == settings.amocrm_client_id:
            client_secret = settings.amocrm_client_secret
        self._cached = _Current(
            integration_id=integration.id,
            version=integration.token_version,
            access_token=cipher.decrypt_optional(integration.access_token_enc),
            refresh_token=cipher.decrypt_optional(integration.refresh_token_enc),
            expires_at=integration.expires_at,
            client_id=integration.client_id,
            client_secret=client_secret,
            redirect_uri=integration.redirect_uri or settings.amocrm_redirect_uri,
            base_url=settings.amocrm_base_url or integration.base_url or "",
            host=urlsplit(integration.base_url).hostname if integration.base_url else None,
            stored_at=integration.updated_at,
        )
        return self._cached

    async def base_url(self) -> str:
        current = self._cached or await self._load()
        return current.base_url

    async def limiter(self) -> SlidingWindow:
        """The account's amoCRM rate limit, shared by its clients, install and refreshes."""
        current = self._cached or await self._load()
        # By the account's host, as the install's calls are; the id before a host is known.
        key = amocrm_key(current.host) if current.host else f"amocrm:{self.account_id}"
        return self.services.limits.window(key, self.services.settings.amocrm_rps)

    async def access_token(self) -> str:
        current = self._cached or await self._load()
        if current.expiring():
            return await self.refresh(current.access_token or "")
        assert current.access_token is not None
        return current.access_token

    async def refresh(self, stale: str) -> str:
        deadline = asyncio.get_running_loop().time() + LOCK_SECONDS * 2
        while True:
            current = await self._load()
            fresh = current.access_token
            if fresh and fresh != stale and not current.expiring():
                return fresh  # someone else refreshed while we waited
            if await self._lock(current):
                return await self._refresh_locked(current)
            if asyncio.get_running_loop().time() > deadline:
                raise TransientUpstreamError(
                    "timed out waiting for another worker to refresh the amoCRM token",
                    api="amocrm",
                )
            await asyncio.sleep(WAIT_STEP)

    async def _lock(self, current: _Current) -> bool:
        now = utcnow()
        async with transaction(self.services.sessions) as session:
            return await repository.lock_refresh(
                session,
                current.integration_id,
                current.version,
                self.owner,
                now=now,
                until=now + timedelta(seconds=LOCK_SECONDS),
            )

    async def _unlock(self, current: _Current) -> None:
        async with transaction(self.services.sessions) as session:
            await repository.unlock_refresh(session, current.integration_id, self.owner)

    async def _refresh_locked(self, current: _Current) -> str:
        bound = log.bind(account_id=self.account_id)
        if not current.refresh_token or not current.client_secret or not current.redirect_uri:
            await self._unlock(current)
            await self._mark_reauth()
            raise AuthorizationRevoked("no refresh token or client secret stored", api="amocrm")
        try:
            pair = await refresh_tokens(
                self.services.http,
                current.base_url,
                client_id=current.client_id,
                client_secret=current.client_secret,
                redirect_uri=current.redirect_uri,
                refresh_token=current.refresh_token,
                limiter=await self.limiter(),
            )
        except AuthorizationRevoked:
            await self._unlock(current)
            await self._mark_reauth()
            bound.warning("amocrm.token.revoked")
            raise
        except (TransientUpstreamError, PermanentUpstreamError):
            await self._unlock(current)
            raise
        cipher = self.services.cipher
        async with transaction(self.services.sessions) as session:
            await repository.store_refreshed(
                session,
                current.integration_id,
                self.owner,
                access_token_enc=cipher.encrypt(pair.access_token),
                refresh_token_enc=cipher.encrypt(pair.refresh_token),
                expires_at=pair.expires_at,
            )
        bound.info("amocrm.token.refreshed", expires_at=pair.expires_at.isoformat())
        await self._load()
        return pair.access_token

    async def _mark_reauth(self) -> None:
        async with transaction(self.services.sessions) as session:
            await repository.mark_reauth(session, self.account_id)


async def amocrm_client(services: Services, account_id: int) -> AmoCRMClient:
    """An amoCRM client for the account, sharing the process's rate limit and connections."""
    tokens = DbTokenSource(services, account_id)
    base_url = await tokens.base_url()
    limiter = await tokens.limiter()
    return AmoCRMClient(base_url, tokens, limiter, http=services.http, observer=observe_upstream)
