"""Who is calling: the admin (bearer token) or an amoCRM widget (disposable token)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

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


# A vendor calls back at the URL it was given, its secret in `?token=` (amoCRM's webhooks,
# Unisender's hook). Ours are 43 characters; anything much longer is noise.
MAX_URL_TOKEN = 256


def url_token(token: str | None, *, url: str, code: str) -> str:
    """The callback URL's token, or 401 `code` when there is none or it is too long."""
    if not token or len(token) > MAX_URL_TOKEN:
        raise Unauthorized(f"the {url} URL carries no valid token", code=code)
    return token


def url_token_openapi(description: str, content: dict[str, Any]) -> dict[str, Any]:
    """The `openapi_extra` of a callback route: its `?token=` (which the route reads itself,
    so it is declared here) and its body's `content`."""
    return {
        "parameters": [
            {
                "name": "token",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "maxLength": MAX_URL_TOKEN},
                "description": description,
            }
        ],
        "requestBody": {"content": content, "required": True},
    }
