"""Edge cases of `amosync.http.rpc.RpcDispatcher`: batch limits, ids, params, crashes, any input.

tests/http/test_rpc.py walks the examples of the JSON-RPC specification; this file pushes on the
limits a hostile or careless caller reaches.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from amosync.http.rpc import MAX_BATCH, RpcDispatcher, RpcError

SECRET = "sk-live-0123456789abcdef"


class Params(BaseModel):
    account_id: int = Field(gt=0)
    note: str = ""


class Nothing(BaseModel):
    pass


def dispatcher(calls: list[str], **kwargs: Any) -> RpcDispatcher:
    rpc = RpcDispatcher(**kwargs)

    async def echo(params: Params) -> dict[str, Any]:
        calls.append(f"echo {params.account_id}")
        return {"account_id": params.account_id}

    async def crash(params: Params) -> None:
        calls.append("crash")
        raise ValueError(f"cannot use {params.note}")

    async def key_error(_: Nothing) -> None:
        calls.append("key_error")
        raise KeyError(SECRET)

    async def bad_data(_: Nothing) -> None:
        raise RpcError(-32010, "refused", data={SECRET})  # a set is not JSON

    rpc.register("echo", echo, Params)
    rpc.register("crash", crash, Params)
    rpc.register("key_error", key_error, Nothing)
    rpc.register("bad_data", bad_data, Nothing)
    return rpc


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def rpc(calls: list[str]) -> RpcDispatcher:
    return dispatcher(calls)


async def send(rpc: RpcDispatcher, body: object) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = await rpc.handle(raw)
    return None if answer is None else json.loads(answer)


def echo(account_id: int, id_: object = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "echo", "params": {"account_id": account_id}, "id": id_}


# --- batches --------------------------------------------------------------------------


async def test_the_default_batch_limit_is_100_calls(calls: list[str]) -> None:
    rpc = dispatcher(calls)
    full = await send(rpc, [echo(n + 1, n) for n in range(MAX_BATCH)])
    assert MAX_BATCH == 100
    assert [answer["id"] for answer in full] == list(range(MAX_BATCH))
    calls.clear()
    over = await send(rpc, [echo(n + 1, n) for n in range(MAX_BATCH + 1)])
    # One error object for the whole batch, not a list: no call of it was run.
    assert isinstance(over, dict)
    assert (over["id"], over["error"]["code"]) == (None, -32600)
    assert str(MAX_BATCH) in over["error"]["message"]
    assert calls == []


async def test_a_batch_limit_counts_notifications_too(calls: list[str]) -> None:
    rpc = dispatcher(calls, max_batch=2)
    note = {"jsonrpc": "2.0", "method": "echo", "params": {"account_id": 1}}
    answer = await send(rpc, [note, note, note])
    assert answer["error"]["code"] == -32600
    assert calls == []


async def test_a_batch_answers_in_the_callers_order(rpc: RpcDispatcher, calls: list[str]) -> None:
    answer = await send(rpc, [echo(3, "c"), echo(1, "a"), echo(2, "b")])
    assert [a["id"] for a in answer] == ["c", "a", "b"]
    assert calls == ["echo 3", "echo 1", "echo 2"]


async def test_a_nested_batch_is_one_invalid_request(rpc: RpcDispatcher, calls: list[str]) -> None:
    answer = await send(rpc, [[echo(1)], echo(2, 2)])
    assert [(a["id"], a.get("error", {}).get("code")) for a in answer] == [
        (None, -32600),
        (2, None),
    ]
    assert calls == ["echo 2"]


async def test_a_crashing_notification_in_a_batch_leaves_no_entry(
    rpc: RpcDispatcher, calls: list[str]
) -> None:
    crash = {"jsonrpc": "2.0", "method": "crash", "params": {"account_id": 1}}
    answer = await send(rpc, [crash, echo(5, 5)])
    assert answer == [{"jsonrpc": "2.0", "result": {"account_id": 5}, "id": 5}]
    assert calls == ["crash", "echo 5"]


# --- ids ------------------------------------------------------------------------------


@pytest.mark.parametrize("id_", ["", "x" * 300, 0, -1, 2**53, 1.5, None])
async def test_a_string_number_or_null_id_is_echoed_as_sent(
    rpc: RpcDispatcher, id_: object
) -> None:
    answer = await send(rpc, echo(1, id_))
    assert answer == {"jsonrpc": "2.0", "result": {"account_id": 1}, "id": id_}


@pytest.mark.parametrize("id_", [True, False, {}, {"id": 1}, [], [1]])
async def test_a_boolean_object_or_array_id_is_refused(
    rpc: RpcDispatcher, calls: list[str], id_: object
) -> None:
    answer = await send(rpc, echo(1, id_))
    # The id cannot be echoed (it is not a valid one), so the answer carries null.
    assert (answer["id"], answer["error"]["code"]) == (None, -32600)
    assert calls == []


async def test_an_id_never_makes_a_notification_of_a_bad_request(rpc: RpcDispatcher) -> None:
    # No id member: a notification, but an invalid request is still answered.
    answer = await send(rpc, {"jsonrpc": "2.0", "method": 5})
    assert answer["error"]["code"] == -32600


# --- params ---------------------------------------------------------------------------


@pytest.mark.parametrize("params", [[1], [], [{"account_id": 1}]])
async def test_params_by_position_are_invalid_params(
    rpc: RpcDispatcher, calls: list[str], params: list[Any]
) -> None:
    answer = await send(rpc, {"jsonrpc": "2.0", "method": "echo", "params": params, "id": 4})
    assert (answer["id"], answer["error"]["code"]) == (4, -32602)
    assert "name" in answer["error"]["message"]
    assert calls == []


async def test_an_unknown_method_wins_over_bad_params(rpc: RpcDispatcher) -> None:
    answer = await send(rpc, {"jsonrpc": "2.0", "method": "nope", "params": [1], "id": 1})
    assert answer["error"]["code"] == -32601


async def test_invalid_params_name_every_bad_field(rpc: RpcDispatcher) -> None:
    body = {"jsonrpc": "2.0", "method": "echo", "params": {"account_id": 0, "note": 5}, "id": 1}
    answer = await send(rpc, body)
    assert answer["error"]["code"] == -32602
    assert sorted(p["field"] for p in answer["error"]["data"]) == ["account_id", "note"]


async def test_a_long_method_name_is_not_echoed_whole(rpc: RpcDispatcher) -> None:
    answer = await send(rpc, {"jsonrpc": "2.0", "method": "m" * 10_000, "id": 1})
    assert answer["error"]["code"] == -32601
    assert len(answer["error"]["message"]) < 200


# --- crashes --------------------------------------------------------------------------


async def test_a_crash_answers_32603_and_leaks_neither_exception_nor_params(
    rpc: RpcDispatcher,
) -> None:
    body = {
        "jsonrpc": "2.0",
        "method": "crash",
        "params": {"account_id": 1, "note": SECRET},
        "id": 8,
    }
    with structlog.testing.capture_logs() as logs:
        raw = await rpc.handle(json.dumps(body).encode())
        keyed = await rpc.handle(b'{"jsonrpc": "2.0", "method": "key_error", "id": 9}')
    assert raw is not None
    assert keyed is not None
    for answer, id_ in ((raw, 8), (keyed, 9)):
        parsed = orjson.loads(answer)
        assert (parsed["id"], parsed["error"]["code"]) == (id_, -32603)
        assert "data" not in parsed["error"]
        assert SECRET.encode() not in answer
        assert b"ValueError" not in answer
        assert b"KeyError" not in answer
    assert [entry["event"] for entry in logs] == ["rpc.call.failed", "rpc.call.failed"]
    assert SECRET not in repr([{k: v for k, v in e.items() if k != "exc_info"} for e in logs])


async def test_an_error_whose_data_is_not_json_still_answers(rpc: RpcDispatcher) -> None:
    with structlog.testing.capture_logs() as logs:
        answer = await send(rpc, {"jsonrpc": "2.0", "method": "bad_data", "id": 1})
    assert answer == {"jsonrpc": "2.0", "error": {"code": -32010, "message": "refused"}, "id": 1}
    assert [entry["event"] for entry in logs] == ["rpc.error_data.not_json"]


# --- any input ------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["2.0", "echo", "crash", "id", "params", "method", "jsonrpc"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["jsonrpc", "method", "params", "id", "account_id", "x"]),
            children,
            max_size=5,
        )
    ),
    max_leaves=12,
)


def assert_response_object(answer: Any) -> None:
    assert isinstance(answer, dict)
    assert answer["jsonrpc"] == "2.0"
    assert "id" in answer
    assert ("result" in answer) != ("error" in answer)
    if "error" in answer:
        assert isinstance(answer["error"]["code"], int)
        assert isinstance(answer["error"]["message"], str)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=json_values)
async def test_any_json_gets_a_well_formed_answer_or_none(body: Any) -> None:
    raw = await dispatcher([]).handle(orjson.dumps(body))
    if raw is None:
        return
    answer = orjson.loads(raw)
    if isinstance(answer, list):
        assert answer, "an empty batch answer is never sent"
        for item in answer:
            assert_response_object(item)
    else:
        assert_response_object(answer)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200))
async def test_any_bytes_get_an_answer_and_never_an_exception(body: bytes) -> None:
    raw = await dispatcher([]).handle(body)
    if raw is not None:
        answer = orjson.loads(raw)
        assert_response_object(answer if isinstance(answer, dict) else answer[0])
