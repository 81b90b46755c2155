"""JSON-RPC 2.0 at POST /rpc (admin): `account.disconnect`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from amosync.accounts.disconnect import disconnect
from amosync.errors import NotFound
from amosync.http.auth import AdminDep
from amosync.http.deps import ServicesDep
from amosync.http.ids import BIGINT_MAX
from amosync.http.rpc import RpcDispatcher, RpcError
from amosync.runtime.services import Services

router = APIRouter(tags=["rpc"])

ACCOUNT_NOT_FOUND = -32004


class DisconnectParams(BaseModel):
    account_id: int = Field(gt=0, le=BIGINT_MAX)


def dispatcher(services: Services) -> RpcDispatcher:
    rpc = RpcDispatcher()

    async def account_disconnect(params: DisconnectParams) -> dict[str, object]:
        try:
            await disconnect(services, params.account_id)
        except NotFound as exc:
            raise RpcError(ACCOUNT_NOT_FOUND, exc.detail) from exc
        return {"account_id": params.account_id, "disconnected": True}

    rpc.register("account.disconnect", account_disconnect, DisconnectParams)
    return rpc


@router.post(
    "/rpc",
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": {"type": ["object", "array"]}}},
            "required": True,
        }
    },
)
async def rpc(request: Request, _: AdminDep, services: ServicesDep) -> Response:
    """JSON-RPC 2.0: `account.disconnect` with `{"account_id": N}`; batches supported."""
    answer = await dispatcher(services).handle(await request.body())
    if answer is None:
        return Response(status_code=204)
    return Response(answer, media_type="application/json")
