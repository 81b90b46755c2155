"""The JSON-RPC 2.0 dispatcher, against the cases of the specification."""

from __future__ import annotations

import json
from typing import Any

import pytest
import structlog
from pydantic import BaseModel, Field

from amosync.http.rpc import RpcDispatcher, RpcError


class SubtractParams(BaseModel):
    minuend: int
    subtrahend: int


class AccountParams(BaseModel):
    account_id: int = Field(gt=0)


class NoParams(BaseModel):
    pass


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def rpc(calls: list[str]) -> RpcDispatcher:
    rpc = RpcDispatcher(max_batch=5)

    async def subtract(params: SubtractParams) -> int:
        calls.append("subtract")
        return params.minuend - params.subtrahend

    async def disconnect(params: AccountParams) -> dict[str, Any]:
        calls.append(f"disconnect {params.account_id}")
        if params.account_id == 404:
            raise RpcError(-32004, "account not found", {"account_id": 404})
        return {"account_id": params.account_id, "disconnected": True}

    async def boom(_: NoParams) -> None:
        calls.append("boom")
        raise RuntimeError("secret detail")

    async def unserializable(_: NoParams) -> object:
        return object()

    rpc.register("subtract", subtract, SubtractParams)
    rpc.register("account.disconnect", disconnect, AccountParams)
    rpc.register("boom", boom, NoParams)
    rpc.register("unserializable", unserializable, NoParams)
    return rpc


async def call(rpc: RpcDispatcher, body: object | bytes) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = await rpc.handle(raw)
    return None if answer is None else json.loads(answer)


def error(code: int, id_: object = None) -> dict[str, Any]:
    """The parts of an error answer every test checks (the message is for people)."""
    return {"jsonrpc": "2.0", "id": id_, "code": code}


def short(answer: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": answer["jsonrpc"], "id": answer["id"], "code": answer["error"]["code"]}


async def test_a_call_by_name_answers_its_result(rpc: RpcDispatcher) -> None:
    body = {"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}}
    assert await call(rpc, {**body, "id": 1}) == {"jsonrpc": "2.0", "result": 19, "id": 1}
    assert await call(rpc, {**body, "id": "abc"}) == {"jsonrpc": "2.0", "result": 19, "id": "abc"}


async def test_an_application_error_keeps_its_code_message_and_data(rpc: RpcDispatcher) -> None:
    answer = await call(
        rpc,
        {"jsonrpc": "2.0", "method": "account.disconnect", "params": {"account_id": 404}, "id": 7},
    )
    assert answer == {
        "jsonrpc": "2.0",
        "error": {"code": -32004, "message": "account not found", "data": {"account_id": 404}},
        "id": 7,
    }


@pytest.mark.parametrize(
    "body", [b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar"', b"", b"\xff", b"[" * 5000]
)
async def test_invalid_json_is_a_parse_error(rpc: RpcDispatcher, body: bytes) -> None:
    assert short(await call(rpc, body)) == error(-32700)


@pytest.mark.parametrize(
    ("body", "id_"),
    [
        ({"jsonrpc": "2.0", "method": 1, "params": "bar"}, None),
        ({"method": "subtract", "id": 1}, 1),
        ({"jsonrpc": "1.0", "method": "subtract", "id": 1}, 1),
        ({"jsonrpc": 2.0, "method": "subtract", "id": 1}, 1),
        ({"jsonrpc": "2.0", "id": 2}, 2),
        ({"jsonrpc": "2.0", "method": "subtract", "params": "bar", "id": 3}, 3),
        ({"jsonrpc": "2.0", "method": "subtract", "params": None, "id": 4}, 4),
        ({"jsonrpc": "2.0", "method": "subtract", "id": {"a": 1}}, None),
        ({"jsonrpc": "2.0", "method": "subtract", "id": [1]}, None),
        ({"jsonrpc": "2.0", "method": "subtract", "id": True}, None),
        ("just a string", None),
        (1, None),
    ],
)
async def test_invalid_requests(
    rpc: RpcDispatcher, calls: list[str], body: object, id_: object
) -> None:
    assert short(await call(rpc, body)) == error(-32600, id_)
    assert calls == []


async def test_an_invalid_request_without_id_is_still_answered(rpc: RpcDispatcher) -> None:
    assert short(await call(rpc, {"method": "subtract"})) == error(-32600)


async def test_an_unknown_method(rpc: RpcDispatcher) -> None:
    assert short(await call(rpc, {"jsonrpc": "2.0", "method": "foobar", "id": "1"})) == error(
        -32601, "1"
    )


async def test_invalid_params_say_which_field(rpc: RpcDispatcher, calls: list[str]) -> None:
    answer = await call(
        rpc,
        {"jsonrpc": "2.0", "method": "account.disconnect", "params": {"account_id": -1}, "id": 1},
    )
    assert short(answer) == error(-32602, 1)
    assert [problem["field"] for problem in answer["error"]["data"]] == ["account_id"]
    missing = await call(rpc, {"jsonrpc": "2.0", "method": "account.disconnect", "id": 2})
    assert short(missing) == error(-32602, 2)
    assert calls == []


async def test_params_by_position_are_refused(rpc: RpcDispatcher, calls: list[str]) -> None:
    answer = await call(rpc, {"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1})
    assert short(answer) == error(-32602, 1)
    assert calls == []


async def test_a_crash_is_an_internal_error_logged_with_its_traceback(rpc: RpcDispatcher) -> None:
    with structlog.testing.capture_logs() as logs:
        answer = await call(rpc, {"jsonrpc": "2.0", "method": "boom", "id": 9})
    assert short(answer) == error(-32603, 9)
    assert "secret detail" not in answer["error"]["message"]
    (entry,) = [e for e in logs if e["event"] == "rpc.call.failed"]
    assert entry["method"] == "boom"
    assert entry["exc_info"] is True
    unserializable = await call(rpc, {"jsonrpc": "2.0", "method": "unserializable", "id": 10})
    assert short(unserializable) == error(-32603, 10)


async def test_notifications_run_but_are_never_answered(
    rpc: RpcDispatcher, calls: list[str]
) -> None:
    assert (
        await rpc.handle(
            b'{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 1, "subtrahend": 1}}'
        )
        is None
    )
    assert await rpc.handle(b'{"jsonrpc": "2.0", "method": "boom"}') is None
    assert await rpc.handle(b'{"jsonrpc": "2.0", "method": "nope"}') is None
    assert await rpc.handle(b'{"jsonrpc": "2.0", "method": "subtract", "params": {}}') is None
    assert calls == ["subtract", "boom"]


async def test_a_null_id_is_a_call_not_a_notification(rpc: RpcDispatcher) -> None:
    answer = await call(rpc, {"jsonrpc": "2.0", "method": "boom", "id": None})
    assert short(answer) == error(-32603, None)


async def test_a_mixed_batch(rpc: RpcDispatcher, calls: list[str]) -> None:
    answer = await call(
        rpc,
        [
            {
                "jsonrpc": "2.0",
                "method": "subtract",
                "params": {"minuend": 1, "subtrahend": 2},
                "id": "1",
            },
            {"jsonrpc": "2.0", "method": "account.disconnect", "params": {"account_id": 5}},
            {"foo": "boo"},
            {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
            {
                "jsonrpc": "2.0",
                "method": "account.disconnect",
                "params": {"account_id": 6},
                "id": 9,
            },
        ],
    )
    assert answer == [
        {"jsonrpc": "2.0", "result": -1, "id": "1"},
        {"jsonrpc": "2.0", "error": answer[1]["error"], "id": None},
        {"jsonrpc": "2.0", "error": answer[2]["error"], "id": "5"},
        {"jsonrpc": "2.0", "result": {"account_id": 6, "disconnected": True}, "id": 9},
    ]
    assert [a["error"]["code"] for a in answer[1:3]] == [-32600, -32601]
    assert calls == ["subtract", "disconnect 5", "disconnect 6"]


async def test_batches_of_invalid_items_answer_each(rpc: RpcDispatcher) -> None:
    answer = await call(rpc, [1, 2, 3])
    assert [short(a) for a in answer] == [error(-32600)] * 3


async def test_an_empty_or_oversized_batch_is_one_invalid_request(
    rpc: RpcDispatcher, calls: list[str]
) -> None:
    assert short(await call(rpc, [])) == error(-32600)
    call_ = {
        "jsonrpc": "2.0",
        "method": "subtract",
        "params": {"minuend": 1, "subtrahend": 1},
        "id": 1,
    }
    assert short(await call(rpc, [call_] * 6)) == error(-32600)
    assert calls == []
    assert len(await call(rpc, [call_] * 5)) == 5


async def test_a_batch_of_notifications_answers_nothing(
    rpc: RpcDispatcher, calls: list[str]
) -> None:
    note = {"jsonrpc": "2.0", "method": "account.disconnect", "params": {"account_id": 1}}
    assert await call(rpc, [note, note]) is None
    assert calls == ["disconnect 1", "disconnect 1"]


def test_names_are_registered_once_and_rpc_names_are_reserved(rpc: RpcDispatcher) -> None:
    async def handler(_: NoParams) -> None:
        return None

    with pytest.raises(ValueError, match="already"):
        rpc.register("subtract", handler, NoParams)
    with pytest.raises(ValueError, match="reserved"):
        rpc.register("rpc.discover", handler, NoParams)
