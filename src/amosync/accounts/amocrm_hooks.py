"""amoCRM-facing routes: the install call, the widget's Unisender key, disconnect hook."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from amosync.accounts import install, repository
from amosync.accounts.disconnect import check_signature, disconnect
from amosync.accounts.runs import start_full_sync
from amosync.accounts.unisender import connect
from amosync.db.models import Account, AccountStatus
from amosync.errors import BadRequest
from amosync.http.body import AccountFields, fields_for_account, json_or_form
from amosync.http.deps import ServicesDep, SessionDep
from amosync.http.ids import BIGINT_MAX, AccountIdQuery

router = APIRouter(tags=["amoCRM"])

_INSTALLED_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>amosync</title>
</head><body style="font-family:sans-serif;margin:3em"><h1>amosync is being installed</h1>
<p>You can close this window and enter your Unisender API key in the widget settings.</p>
</body></html>"""


@router.get("/vidget", response_model=None)
async def install_call(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    referer: Annotated[str | None, Query(max_length=512)] = None,
    client_id: Annotated[str | None, Query(max_length=128)] = None,
    from_widget: Annotated[str | None, Query(max_length=16)] = None,  # noqa: ARG001
    state: Annotated[str | None, Query(max_length=512)] = None,  # noqa: ARG001
    error: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    """amoCRM's install call: checked, then the code is exchanged by a background job."""
    if error:
        raise BadRequest(
            f"amoCRM reported '{error}': the install was not granted", code="install_denied"
        )
    if not code:
        raise BadRequest("the install call carries no code", code="missing_code")
    await install.accept_install(
        services, session, code=code, referer=referer or "", client_id=client_id
    )
    services.notify_work()
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(_INSTALLED_PAGE)
    return JSONResponse({"status": "accepted"})


class UnisenderKey(AccountFields):
    unisender_key: str = Field(min_length=1, max_length=255)
    list_id: int | None = Field(default=None, gt=0, le=BIGINT_MAX)


class Connected(BaseModel):
    account_id: int
    connected: bool
    list_id: int
    run_id: int | None


@router.post("/vidget/unisender", openapi_extra=json_or_form(UnisenderKey))
async def unisender_key(
    body: Annotated[UnisenderKey, Depends(fields_for_account(UnisenderKey))],
    services: ServicesDep,
    session: SessionDep,
) -> Connected:
    """Connect the account's Unisender key (checked first) and start the first full sync."""
    account = await repository.get(session, body.account_id, for_update=True)
    if account is None:
        # The widget can save the key while the install job is still exchanging the code;
        # the token proved the account id, and the install job fills in the rest.
        account = Account(id=body.account_id, status=AccountStatus.ACTIVE, settings={})
        session.add(account)
    if account.status == AccountStatus.DISCONNECTED:
        raise BadRequest(
            "the account is disconnected; install the widget again", code="account_disconnected"
        )
    await connect(services, session, account, body.unisender_key, body.list_id)
    run, _ = await start_full_sync(session, account.id)
    services.notify_work()
    assert account.list_id is not None
    return Connected(account_id=account.id, connected=True, list_id=account.list_id, run_id=run.id)


@router.get("/amocrm/disconnect")
async def disconnect_hook(
    services: ServicesDep,
    account_id: AccountIdQuery,
    client_uuid: Annotated[str, Query(min_length=1, max_length=128)],
    signature: Annotated[str, Query(min_length=1, max_length=256)],
) -> dict[str, object]:
    """amoCRM's disconnect hook, signed with the client secret."""
    secret = services.settings.amocrm_client_secret
    if not secret:
        raise BadRequest("AMOSYNC_AMOCRM_CLIENT_SECRET is not set", code="install_not_configured")
    check_signature(secret, client_uuid, str(account_id), signature)
    await disconnect(services, account_id)
    return {"account_id": account_id, "disconnected": True}
