"""Who is calling: the admin (bearer token) or an amoCRM widget (disposable token)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from amosync.errors import Forbidden, Unauthorized
from amosync.http.deps import ServicesDep
from amosync.http.disposable import verify_disposable_token
from amosync.runtime.crypto import same
from amosync.runtime.services import Services


@dataclass(frozen=True)
class Caller:
    is_admin: bool
    account_id: int | None = None

    def require_account(self, account_id: int) -> None:
        """A widget may act on its own account only."""
        if not self.is_admin and self.account_id != account_id:
            raise Forbidden("this token belongs to another account", code="forbidden_account")


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("use 'Authorization: Bearer <AMOSYNC_ADMIN_TOKEN>'")
    return value.strip()


def _admin(request: Request, services: Services) -> Caller | None:
    token = _bearer(request)
    if token is None:
        return None
    if not same(token, services.admin_token):
        raise Unauthorized("the admin token is not valid", code="invalid_token")
    return Caller(is_admin=True)


def require_admin(request: Request, services: ServicesDep) -> Caller:
    caller = _admin(request, services)
    if caller is None:
        raise Unauthorized("this route needs 'Authorization: Bearer <AMOSYNC_ADMIN_TOKEN>'")
    return caller


def require_admin_or_widget(request: Request, services: ServicesDep) -> Caller:
    caller = _admin(request, services)
    if caller is not None:
        return caller
    token = request.headers.get("x-auth-token")
    if not token:
        raise Unauthorized(
            "this route needs 'Authorization: Bearer <admin token>' or an amoCRM "
            "'X-Auth-Token' disposable token"
        )
    settings = services.settings
    if not settings.amocrm_client_secret or not settings.token_audience:
        raise Unauthorized(
            "widget tokens are not accepted: AMOSYNC_AMOCRM_CLIENT_SECRET and "
            "AMOSYNC_AMOCRM_REDIRECT_URI are not configured",
            code="widget_auth_unconfigured",
        )
    claims = verify_disposable_token(
        token, secret=settings.amocrm_client_secret, audience=settings.token_audience
    )
    return Caller(is_admin=False, account_id=claims.account_id)


AdminDep = Annotated[Caller, Depends(require_admin)]
CallerDep = Annotated[Caller, Depends(require_admin_or_widget)]
