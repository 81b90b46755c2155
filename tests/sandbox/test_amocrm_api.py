"""amoCRM API v4 contact pages, account, rate limit, latency, faults and the call log."""

from __future__ import annotations

import asyncio
import time

import pytest

from amosync.sandbox.contacts import EMAIL_FIELD
from amosync.sandbox.rates import max_in_window, shortest_span
from tests.sandbox.conftest import ACCOUNT_ID, Served


async def page(served: Served, token: str, **params: object):  # type: ignore[no-untyped-def]
    return await served.api("GET", "/api/v4/contacts", token, params=params)


async def test_no_contacts_is_204_with_an_empty_body(served: Served, token: str) -> None:
    response = await page(served, token, limit=250, page=1)
    assert response.status_code == 204
    assert response.content == b""


async def test_pages_link_to_the_next_one_until_the_last(served: Served, token: str) -> None:
    ids = served.amo.generate_contacts(ACCOUNT_ID, 260, seed=1)
    first = await page(served, token, limit=250, page=1)
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/hal+json"
    body = first.json()
    assert body["_page"] == 1
    assert [c["id"] for c in body["_embedded"]["contacts"]] == list(ids[:250])
    assert body["_links"]["self"]["href"].endswith("page=1")
    assert "page=2" in body["_links"]["next"]["href"]

    last = (await page(served, token, limit=250, page=2)).json()
    assert [c["id"] for c in last["_embedded"]["contacts"]] == list(ids[250:])
    assert "next" not in last["_links"]

    past = await page(served, token, limit=250, page=3)
    assert (past.status_code, past.content) == (204, b"")
    assert served.amo.contact_pages(ACCOUNT_ID) == [1, 2, 3]


async def test_a_full_last_page_has_no_next_link(served: Served, token: str) -> None:
    served.amo.generate_contacts(ACCOUNT_ID, 250, seed=1)
    only = (await page(served, token, limit=250, page=1)).json()
    assert len(only["_embedded"]["contacts"]) == 250
    assert "next" not in only["_links"]


@pytest.mark.parametrize("limit", [251, 1000, 0, -1, "many"])
async def test_limit_outside_1_to_250_is_refused(served: Served, token: str, limit: object) -> None:
    served.amo.generate_contacts(ACCOUNT_ID, 10, seed=1)
    response = await page(served, token, limit=limit, page=1)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 400


async def test_the_default_limit_is_50(served: Served, token: str) -> None:
    served.amo.generate_contacts(ACCOUNT_ID, 60, seed=1)
    body = (await served.api("GET", "/api/v4/contacts", token)).json()
    assert len(body["_embedded"]["contacts"]) == 50


async def test_contacts_have_amocrm_shape(served: Served, token: str) -> None:
    amo = served.amo
    ann = amo.add_contact(
        ACCOUNT_ID, "Ann Lee", emails=["ann@example.com", "a2@x.com"], phones=["+7 1"]
    )
    bare = amo.add_contact(ACCOUNT_ID, "Nobody")
    body = (await page(served, token, limit=250, page=1)).json()
    listed = {c["id"]: c for c in body["_embedded"]["contacts"]}
    contact = listed[ann["id"]]
    assert (contact["name"], contact["first_name"], contact["last_name"]) == (
        "Ann Lee",
        "Ann",
        "Lee",
    )
    assert isinstance(contact["updated_at"], int)
    assert isinstance(contact["created_at"], int)
    assert contact["responsible_user_id"] > 0
    (email,) = [f for f in contact["custom_fields_values"] if f["field_code"] == "EMAIL"]
    assert email["field_id"] == EMAIL_FIELD["field_id"]
    assert email["field_type"] == "multitext"
    assert [v["value"] for v in email["values"]] == ["ann@example.com", "a2@x.com"]
    assert [v["enum_code"] for v in email["values"]] == ["WORK", "PRIV"]
    assert all(isinstance(v["enum_id"], int) for v in email["values"])
    (phone,) = [f for f in contact["custom_fields_values"] if f["field_code"] == "PHONE"]
    assert phone["values"][0]["value"] == "+7 1"
    assert listed[bare["id"]]["custom_fields_values"] is None


async def test_deleted_contacts_leave_the_list_and_come_back_restored(
    served: Served, token: str
) -> None:
    amo = served.amo
    ids = amo.generate_contacts(ACCOUNT_ID, 30, seed=2)
    for contact_id in (ids[0], ids[10], ids[11]):
        amo.delete_contact(ACCOUNT_ID, contact_id)
    first = (await page(served, token, limit=10, page=1)).json()["_embedded"]["contacts"]
    second = (await page(served, token, limit=10, page=2)).json()["_embedded"]["contacts"]
    third = (await page(served, token, limit=10, page=3)).json()
    assert [c["id"] for c in first] == list(ids[1:10]) + [ids[12]]
    assert [c["id"] for c in second] == list(ids[13:23])
    assert [c["id"] for c in third["_embedded"]["contacts"]] == list(ids[23:30])
    assert "next" not in third["_links"]
    amo.restore_contact(ACCOUNT_ID, ids[10])
    assert amo.contact_count(ACCOUNT_ID) == 28
    assert (await served.api("GET", f"/api/v4/contacts/{ids[0]}", token)).status_code == 204
    single = await served.api("GET", f"/api/v4/contacts/{ids[10]}", token)
    assert single.json()["id"] == ids[10]


async def test_updated_at_filter_and_order(served: Served, token: str) -> None:
    amo = served.amo
    ids = amo.generate_contacts(ACCOUNT_ID, 100, seed=3)  # updated in the past year
    cutoff = int(time.time()) - 1
    amo.update_contact(ACCOUNT_ID, ids[5], name="Edited Five")
    fresh = amo.add_contact(ACCOUNT_ID, "New One", emails=["new@example.com"])
    body = (
        await page(served, token, limit=250, page=1, **{"filter[updated_at][from]": cutoff})
    ).json()
    assert sorted(c["id"] for c in body["_embedded"]["contacts"]) == [ids[5], fresh["id"]]
    assert all(c["updated_at"] >= cutoff for c in body["_embedded"]["contacts"])

    older = await page(served, token, limit=250, page=1, **{"filter[updated_at][to]": cutoff})
    assert len(older.json()["_embedded"]["contacts"]) == 99

    newest_first = (
        await page(served, token, limit=3, page=1, **{"order[updated_at]": "desc"})
    ).json()["_embedded"]["contacts"]
    stamps = [c["updated_at"] for c in newest_first]
    assert stamps == sorted(stamps, reverse=True)
    assert {ids[5], fresh["id"]} <= {c["id"] for c in newest_first}

    by_id_desc = (await page(served, token, limit=2, page=1, **{"order[id]": "desc"})).json()
    assert [c["id"] for c in by_id_desc["_embedded"]["contacts"]] == [fresh["id"], ids[99]]

    nothing = await page(served, token, page=1, **{"filter[updated_at][from]": cutoff + 10**6})
    assert nothing.status_code == 204


async def test_account_shape(served: Served, token: str) -> None:
    account = (await served.api("GET", "/api/v4/account", token)).json()
    assert {"id", "name", "subdomain", "country", "currency", "created_at"} <= set(account)
    assert (account["id"], account["name"], account["country"]) == (ACCOUNT_ID, "Acme", "RU")


async def test_rate_limit_answers_429_and_counts_them(served: Served, token: str) -> None:
    served.amo.rate_limit_rps = 3
    statuses = [(await served.api("GET", "/api/v4/account", token)).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    assert served.amo.rate_limited(ACCOUNT_ID) == 2
    assert served.sandbox.calls.count_where(path="/api/v4/account", status=429) == 2
    await asyncio.sleep(1.05)  # the window slides: calls are allowed again
    assert (await served.api("GET", "/api/v4/account", token)).status_code == 200


async def test_token_requests_count_against_the_account_limit(served: Served) -> None:
    pair = await served.install()
    served.amo.rate_limit_rps = 3
    assert (await served.api("GET", "/api/v4/account", pair["access_token"])).status_code == 200
    refreshed = await served.token_request(
        grant_type="refresh_token", refresh_token=pair["refresh_token"]
    )
    assert refreshed.status_code == 200
    token = refreshed.json()["access_token"]
    assert (await served.api("GET", "/api/v4/account", token)).status_code == 200
    # The window holds three requests now, the refresh among them.
    again = await served.token_request(
        grant_type="refresh_token", refresh_token=refreshed.json()["refresh_token"]
    )
    assert again.status_code == 429
    assert served.amo.rate_limited(ACCOUNT_ID) == 1
    # Refused before the grant was looked at: the refresh token is not spent.
    await asyncio.sleep(1.05)
    retried = await served.token_request(
        grant_type="refresh_token", refresh_token=refreshed.json()["refresh_token"]
    )
    assert retried.status_code == 200


async def test_arrivals_give_the_most_requests_in_any_second(served: Served, token: str) -> None:
    # The code exchange of the `token` fixture arrived too.
    assert len(served.amo.arrivals(ACCOUNT_ID)) == 1
    served.amo.rate_limit_rps = 4
    started = time.time()
    for _ in range(4):
        assert (await served.api("GET", "/api/v4/account", token)).status_code == 200
    arrivals = served.amo.arrivals(ACCOUNT_ID, since=started)
    assert len(arrivals) == 4
    assert arrivals == sorted(arrivals)
    assert started <= arrivals[0] <= arrivals[-1] <= time.time()
    assert served.amo.max_per_second(ACCOUNT_ID, since=started) == 4
    for _ in range(2):  # over the limit: answered 429, but they did arrive
        assert (await served.api("GET", "/api/v4/account", token)).status_code == 429
    assert served.amo.max_per_second(ACCOUNT_ID, since=started) == 6
    assert served.amo.max_per_second() == served.amo.max_per_second(ACCOUNT_ID) >= 6


def test_max_in_window_is_half_open_and_shortest_span_is_the_slack() -> None:
    times = [0.0, 0.1, 0.2, 1.0, 1.05, 2.5]
    assert max_in_window(times, 1.0) == 4  # 0.1, 0.2, 1.0 and 1.05 lie within [0.1, 1.1)
    assert max_in_window([0.0, 1.0], 1.0) == 1  # 1 s apart: not in one window
    assert max_in_window([], 1.0) == 0
    assert shortest_span(times, 3) == pytest.approx(0.2)
    assert shortest_span(times, 2) == pytest.approx(0.05)
    assert shortest_span(times, 7) is None


async def test_latency_is_added_to_every_call(served: Served, token: str) -> None:
    served.amo.latency = 0.2
    started = time.perf_counter()
    response = await served.api("GET", "/api/v4/account", token)
    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.2


async def test_injected_faults_hit_matching_paths_the_given_number_of_times(
    served: Served, token: str
) -> None:
    served.amo.generate_contacts(ACCOUNT_ID, 5, seed=1)
    served.amo.add_fault(503, path="/api/v4/contacts", times=2)
    account = await served.api("GET", "/api/v4/account", token)
    statuses = [(await page(served, token, page=1)).status_code for _ in range(3)]
    assert account.status_code == 200
    assert statuses == [503, 503, 200]
    served.amo.faults.rate = 1.0
    served.amo.faults.rate_status = 502
    assert (await page(served, token, page=1)).status_code == 502
    served.amo.clear_faults()
    assert (await page(served, token, page=1)).status_code == 200


async def test_the_call_log_records_each_api_call(served: Served, token: str) -> None:
    served.sandbox.calls.clear()
    await served.api("GET", "/api/v4/account", token)
    await page(served, token, page=1)
    calls = served.sandbox.calls
    assert [(c.api, c.method, c.path, c.status, c.account_id) for c in calls] == [
        ("amocrm", "GET", "/api/v4/account", 200, ACCOUNT_ID),
        ("amocrm", "GET", "/api/v4/contacts", 204, ACCOUNT_ID),
    ]
    assert calls.by_path() == {"/api/v4/account": 1, "/api/v4/contacts": 1}
