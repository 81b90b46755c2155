"""Input that used to end in a 500: deep JSON, integers over 64 bits, oversized ids and cursors.

Every answer here is a 4xx in the project's error shape (or, for a page of the dashboard, a
friendly error page), on SQLite and PostgreSQL, never a 500.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from amosync.http.body import MAX_JSON_DEPTH, json_too_deep
from amosync.runtime.services import Services
from tests.web.conftest import account, add, csrf, log_in

ACCOUNT = 30896271
HUGE = [2**63, 2**64, 2**70, 10**40]
DEEP = 100_000


def deep_list(depth: int = DEEP) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_object(depth: int = DEEP) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def refused(response: httpx.Response, label: str, *statuses: int) -> dict[str, Any]:
    """A 4xx in the shape of every amosync error."""
    assert 400 <= response.status_code < 500, f"{label}: {response.status_code} {response.text}"
    if statuses:
        assert response.status_code in statuses, f"{label}: {response.status_code}"
    body = response.json()
    assert set(body) == {"error", "detail"}, f"{label}: {body}"
    assert body["error"], label
    assert body["detail"], label
    return dict(body)


# -- deeply nested JSON -----------------------------------------------------------------

JSON_ROUTES = [
    ("POST", f"/accounts/{ACCOUNT + 1}"),
    ("PUT", f"/accounts/{ACCOUNT}"),
    ("PUT", f"/integrations/{ACCOUNT}"),
    ("POST", "/sync"),
    ("POST", "/vidget/unisender"),
]


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
async def test_deeply_nested_json_is_refused(
    client: httpx.AsyncClient, services: Services, method: str, path: str, content_type: str | None
) -> None:
    await add(services, account(ACCOUNT))
    headers = {"Content-Type": content_type} if content_type else {}
    for body in (deep_list(), deep_object(), deep_list(900), b'{"x": ' + deep_list(2000) + b"}"):
        response = await client.request(method, path, content=body, headers=headers)
        refused(response, f"{method} {path} {content_type} {body[:20]!r}", 400, 401, 415, 422)


async def test_json_rpc_keeps_its_own_parse_error_for_deep_json(client: httpx.AsyncClient) -> None:
    for body in (deep_list(), deep_list(900)):
        response = await client.post("/rpc", content=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        # A list is a batch: each of its (empty-list) calls is an invalid request.
        for item in answer if isinstance(answer, list) else [answer]:
            assert item["error"]["code"] in (-32700, -32600), item


async def test_moderately_nested_json_still_reaches_the_route(
    client: httpx.AsyncClient, services: Services
) -> None:
    await add(services, account(ACCOUNT))
    nested: Any = 1
    for _ in range(20):
        nested = {"n": nested}
    response = await client.put(f"/accounts/{ACCOUNT}", json={"settings": {"deep": nested}})
    # Read by the route, which refuses the key as not a setting (SPEC §8): not the
    # middleware's refusal of a body too deep to parse (`invalid_request`).
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_settings", response.text
    assert "deep" in response.json()["detail"]


# -- integers over 64 bits in settings ---------------------------------------------------


@pytest.mark.parametrize("value", [2**70, -(2**70), 2**64, 10**40])
async def test_an_integer_over_64_bits_in_settings_is_stored_losslessly_or_refused(
    client: httpx.AsyncClient, services: Services, value: int
) -> None:
    await add(services, account(ACCOUNT))
    settings = {"big": value, "nested": [{"n": value}]}
    body = json.dumps({"settings": settings})
    headers = {"Content-Type": "application/json"}
    answers = [
        await client.put(f"/accounts/{ACCOUNT}", content=body, headers=headers),
        await client.post(f"/accounts/{ACCOUNT + 1}", content=body, headers=headers),
    ]
    for response, account_id in zip(answers, (ACCOUNT, ACCOUNT + 1), strict=True):
        if response.status_code >= 400:
            refused(response, f"settings {value}", 422)
            continue
        assert response.status_code in (200, 201), response.text
        shown = await client.get(f"/accounts/{account_id}")
        assert shown.status_code == 200, shown.text
        # Lossless: the very integer comes back, not a float or a rounded one.
        assert json.loads(shown.text)["settings"] == settings


# -- ids no column can hold --------------------------------------------------------------

BAD_IDS = [*HUGE, -1, 0, -(2**70)]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_account_ids_out_of_range_are_404_or_422_everywhere(
    client: httpx.AsyncClient, services: Services, bad: int
) -> None:
    await add(services, account(ACCOUNT))
    label = f"account_id={bad}"
    for method, path in [
        ("GET", f"/accounts/{bad}"),
        ("PUT", f"/accounts/{bad}"),
        ("POST", f"/accounts/{bad}"),
        ("DELETE", f"/accounts/{bad}"),
        ("GET", f"/accounts/integrations/{bad}"),
        ("PUT", f"/integrations/{bad}"),
        ("DELETE", f"/integrations/{bad}"),
        ("DELETE", f"/request/{bad}"),
        ("GET", f"/sync/{bad}"),
    ]:
        response = await client.request(method, path, json={})
        refused(response, f"{method} {path}", 404, 422)
    for path in ["/accounts/unsync", "/accounts/sync", "/acchasuni", "/unisender/lists"]:
        refused(await client.get(path, params={"account_id": bad}), f"{path} {label}", 404, 422)
    refused(
        await client.get(
            "/amocrm/disconnect", params={"account_id": bad, "client_uuid": "x", "signature": "y"}
        ),
        f"/amocrm/disconnect {label}",
        403,
        404,
        422,
    )
    for body in ({"account_id": bad}, {"account_id": str(bad)}):
        refused(await client.post("/sync", json=body), f"POST /sync json {body}", 404, 422)
        refused(await client.post("/sync", data=body), f"POST /sync form {body}", 404, 422)
        key = {**body, "unisender_key": "k"}
        for sent in ({"json": key}, {"data": key}):
            response = await client.post("/vidget/unisender", **sent)  # type: ignore[arg-type]
            refused(response, f"POST /vidget/unisender {sent}", 404, 422)
    for field in ("list_id", "account_id"):
        response = await client.put(f"/accounts/{ACCOUNT}", json={field: bad})
        refused(response, f"PUT /accounts {field}={bad}", 422)
    rpc = {"jsonrpc": "2.0", "id": 1, "method": "account.disconnect", "params": {"account_id": bad}}
    answer = await client.post("/rpc", json=rpc)
    assert answer.status_code == 200, answer.text
    assert answer.json()["error"]["code"] in (-32602, -32004), answer.text


def cursor_of(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


BAD_CURSORS = [
    cursor_of(f"k{2**63}"),
    cursor_of(f"k{2**70}"),
    cursor_of("k" + "9" * 150),
    cursor_of("k-1"),
    cursor_of("k-" + "9" * 30),
    cursor_of("k 1"),
    cursor_of("k+1"),
    cursor_of("k1_000"),
    cursor_of("k١٢"),  # Arabic-Indic digits: int() reads them, no cursor holds them
    "%%%",
    "k" * 200,
]


@pytest.mark.parametrize("cursor", BAD_CURSORS)
async def test_cursors_no_page_returned_are_refused(
    client: httpx.AsyncClient, services: Services, cursor: str
) -> None:
    await add(services, account(ACCOUNT))
    for path, params in [
        ("/accounts", {}),
        ("/accounts/sync", {"account_id": ACCOUNT}),
        ("/accounts/unsync", {"account_id": ACCOUNT}),
    ]:
        response = await client.get(path, params={**params, "cursor": cursor})
        assert refused(response, f"{path} cursor={cursor}", 400, 422)["error"] == "invalid_cursor"


# -- the dashboard -----------------------------------------------------------------------


@pytest.fixture
async def operator(services: Services) -> Any:
    from tests.web.conftest import dashboard_app

    transport = httpx.ASGITransport(app=dashboard_app(services), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://amosync.test") as http:
        assert (await log_in(http)).status_code == 303
        yield http


@pytest.mark.parametrize("bad", [*BAD_IDS, "1e3", "x", "１"])
async def test_dashboard_ids_out_of_range_are_not_found(
    operator: httpx.AsyncClient, services: Services, bad: int | str
) -> None:
    await add(services, account(ACCOUNT))
    token = await csrf(operator)
    for method, path in [
        ("GET", f"/ui/accounts/{bad}"),
        ("GET", f"/ui/accounts/{bad}/progress"),
        ("GET", f"/ui/accounts/{bad}/disconnect"),
        ("POST", f"/ui/accounts/{bad}/sync"),
        ("POST", f"/ui/accounts/{bad}/disconnect"),
        ("POST", f"/ui/jobs/{bad}/retry"),
        ("GET", f"/ui/accounts/{bad}/unsynced.csv"),
        ("GET", f"/ui/accounts/{bad}/list"),
        ("POST", f"/ui/accounts/{bad}/list"),
        ("POST", f"/ui/accounts/{bad}/unisender-key"),
        ("POST", f"/ui/accounts/{bad}/retry"),
        ("POST", f"/ui/accounts/{bad}/webhooks"),
        ("POST", f"/ui/accounts/{bad}/unisender-hook"),
    ]:
        data = {"csrf": token} if method == "POST" else None
        response = await operator.request(method, path, data=data)
        assert response.status_code == 404, f"{method} {path}: {response.status_code}"


@pytest.mark.parametrize("cursor", BAD_CURSORS)
async def test_dashboard_cursors_no_page_returned_are_refused(
    operator: httpx.AsyncClient, services: Services, cursor: str
) -> None:
    await add(services, account(ACCOUNT))
    for path in ["/", f"/ui/accounts/{ACCOUNT}", f"/ui/accounts/{ACCOUNT}?contacts=unsynced"]:
        sep = "&" if "?" in path else "?"
        response = await operator.get(f"{path}{sep}cursor={cursor}")
        assert response.status_code == 400, f"{path} cursor={cursor}: {response.status_code}"


# -- the depth limit itself ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "too_deep"),
    [
        (b"[]", False),
        (deep_list(MAX_JSON_DEPTH), False),
        (deep_list(MAX_JSON_DEPTH + 1), True),
        (deep_object(MAX_JSON_DEPTH), False),
        (deep_object(MAX_JSON_DEPTH + 1), True),
        (b"[" * DEEP, True),  # never closed: json would recurse all the same
        (b"[" + b"[[]]," * 5000 + b"1]", False),  # wide, not deep
        (b'["' + b"[" * 5000 + b'"]', False),  # brackets in a string are text
        (b'{"a": "\\"[[[[", "b": ' + deep_list(10) + b"}", False),
        (b'["\\\\"' + b"," + deep_list(MAX_JSON_DEPTH) + b"]", True),
        (b"[NaN," + deep_list(MAX_JSON_DEPTH + 1) + b"]", True),
    ],
)
def test_json_depth_is_measured_without_recursion(body: bytes, too_deep: bool) -> None:
    assert json_too_deep(body) is too_deep


async def test_the_limit_is_where_routes_start_refusing(
    client: httpx.AsyncClient, services: Services
) -> None:
    await add(services, account(ACCOUNT))
    # Under the limit the route reads the body (and refuses the key as not a setting);
    # over it the middleware refuses the body unread.
    for depth, code in (
        (MAX_JSON_DEPTH - 2, "invalid_settings"),
        (MAX_JSON_DEPTH + 1, "invalid_request"),
    ):
        nested: Any = 1
        for _ in range(depth):
            nested = [nested]
        # {"settings": {"deep": ...}}: two levels more than `nested`.
        response = await client.put(f"/accounts/{ACCOUNT}", json={"settings": {"deep": nested}})
        assert response.status_code == 422, (depth, response.text)
        assert response.json()["error"] == code, (depth, response.text)
