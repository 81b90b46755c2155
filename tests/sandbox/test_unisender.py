"""Unisender over HTTP: HTTP-200 errors, lists, importContacts, exclude, getContact."""

from __future__ import annotations

import pytest

from tests.sandbox.conftest import KEY, Served


def rows(emails: list[str], list_id: int) -> dict[str, str]:
    """importContacts arguments with columns email, Name, email_list_ids."""
    params = {
        "field_names[0]": "email",
        "field_names[1]": "Name",
        "field_names[2]": "email_list_ids",
    }
    for index, email in enumerate(emails):
        params[f"data[{index}][0]"] = email
        params[f"data[{index}][1]"] = f"Person {index}"
        params[f"data[{index}][2]"] = str(list_id)
    return params


async def new_list(served: Served, title: str = "amoCRM") -> int:
    answer = (await served.unisender("createList", title=title)).json()
    return int(answer["result"]["id"])


async def test_an_unknown_key_is_an_error_with_http_200(served: Served) -> None:
    response = await served.http.post(
        "/ru/api/getLists", params={"format": "json"}, data={"api_key": "nope"}
    )
    assert response.status_code == 200
    assert response.json()["code"] == "invalid_api_key"
    assert response.json()["error"]
    assert "result" not in response.json()
    assert served.sandbox.calls[-1].code == "invalid_api_key"


async def test_lists_are_created_listed_and_titles_are_unique(served: Served) -> None:
    list_id = await new_list(served, 'Clients "VIP"')
    assert (await served.unisender("getLists")).json() == {
        "result": [{"id": list_id, "title": 'Clients "VIP"'}]
    }
    duplicate = (await served.unisender("createList", title='Clients "VIP"')).json()
    assert duplicate["code"] == "invalid_arg"
    assert "&quot;" in duplicate["error"]  # Unisender HTML-escapes its messages
    assert served.uni.lists(KEY) == [{"id": list_id, "title": 'Clients "VIP"'}]


async def test_import_adds_addresses_to_the_list(served: Served) -> None:
    list_id = await new_list(served)
    answer = (
        await served.unisender(
            "importContacts", **rows(["a@example.com", "B@Example.com"], list_id)
        )
    ).json()
    assert answer["result"] == {
        "total": 2,
        "inserted": 2,
        "updated": 0,
        "deleted": 0,
        "new_emails": 2,
        "invalid": 0,
        "log": [],
    }
    assert served.uni.list_members(KEY, list_id) == {"a@example.com", "b@example.com"}
    again = (await served.unisender("importContacts", **rows(["a@example.com"], list_id))).json()
    assert (again["result"]["inserted"], again["result"]["updated"]) == (0, 1)
    contact = served.uni.contact(KEY, "a@example.com")
    assert contact is not None
    assert contact["status"] == "new"  # new addresses get status "new"
    assert contact["fields"] == {"Name": "Person 0"}


async def test_more_than_500_rows_are_refused(served: Served) -> None:
    list_id = await new_list(served)
    emails = [f"user{i}@example.com" for i in range(501)]
    answer = (await served.unisender("importContacts", **rows(emails, list_id))).json()
    assert answer["code"] == "invalid_arg"
    assert served.uni.list_members(KEY, list_id) == set()
    ok = (await served.unisender("importContacts", **rows(emails[:500], list_id))).json()
    assert ok["result"]["inserted"] == 500


async def test_rejected_rows_are_logged_by_index_and_skipped(served: Served) -> None:
    list_id = await new_list(served)
    served.uni.reject("blocked@example.com", "email_blocked")
    emails = ["good@example.com", "not-an-address", "blocked@example.com", "x@"]
    result = (await served.unisender("importContacts", **rows(emails, list_id))).json()["result"]
    assert [(entry["index"], entry["code"]) for entry in result["log"]] == [
        (1, "invalid_email"),
        (2, "email_blocked"),
        (3, "invalid_email"),
    ]
    assert all(entry["message"] for entry in result["log"])
    # `invalid`: "how many of the e-mail addresses were not imported" (the method's doc).
    assert (result["total"], result["inserted"], result["invalid"]) == (4, 1, 3)
    assert served.uni.list_members(KEY, list_id) == {"good@example.com"}


async def test_warned_rows_are_logged_and_imported_all_the_same(served: Served) -> None:
    list_id = await new_list(served)
    served.uni.warn("info@example.com", "role_address", "A role address")
    emails = ["good@example.com", "info@example.com"]
    answer = (await served.unisender("importContacts", **rows(emails, list_id))).json()
    result = answer["result"]
    assert result["log"] == [{"index": 1, "code": "role_address", "message": "A role address"}]
    assert (result["total"], result["inserted"], result["invalid"]) == (2, 2, 0)
    assert answer["warnings"] == [{"warning": "A role address"}]
    assert served.uni.list_members(KEY, list_id) == set(emails)


async def test_a_failing_address_fails_every_import_holding_it(served: Served) -> None:
    list_id = await new_list(served)
    served.uni.fail_imports("owned@example.com", code="unspecified", message="Owned <elsewhere>")
    answer = await served.unisender(
        "importContacts", **rows(["a@example.com", "Owned@Example.com"], list_id)
    )
    assert answer.status_code == 200
    assert answer.json() == {"error": "Owned &lt;elsewhere&gt;", "code": "unspecified"}
    served.uni.fail_imports("crash@example.com", status=500)
    answer = await served.http.post(
        "/ru/api/importContacts",
        params={"format": "json"},
        data={"api_key": KEY, **rows(["crash@example.com"], list_id)},
    )
    assert answer.status_code == 500
    assert served.uni.list_members(KEY, list_id) == set()
    served.uni.clear_import_failures()
    answer = await served.unisender("importContacts", **rows(["crash@example.com"], list_id))
    assert answer.json()["result"]["inserted"] == 1


async def test_an_unsubscribed_address_stays_unsubscribed_on_import(served: Served) -> None:
    list_id = await new_list(served)
    other = await new_list(served, "Other")
    await served.unisender("importContacts", **rows(["u@example.com"], list_id))
    served.uni.unsubscribe(KEY, "u@example.com")
    await served.unisender("importContacts", **rows(["u@example.com"], list_id))
    await served.unisender("importContacts", **rows(["u@example.com"], other))
    contact = served.uni.contact(KEY, "u@example.com")
    assert contact is not None
    assert contact["status"] == "unsubscribed"
    assert {m["id"]: m["status"] for m in contact["lists"]} == {
        list_id: "unsubscribed",
        other: "unsubscribed",
    }
    assert served.uni.list_members(KEY, list_id, status="active") == set()
    # Only an explicit email_status changes it.
    params = rows(["u@example.com"], list_id) | {
        "field_names[3]": "email_status",
        "data[0][3]": "active",
    }
    await served.unisender("importContacts", **params)
    assert served.uni.contact(KEY, "u@example.com")["status"] == "active"  # type: ignore[index]


async def test_exclude_takes_the_address_out_of_the_list_only(served: Served) -> None:
    list_id = await new_list(served)
    other = await new_list(served, "Other")
    await served.unisender("importContacts", **rows(["a@example.com"], list_id))
    await served.unisender("importContacts", **rows(["a@example.com"], other))
    answer = (
        await served.unisender(
            "exclude", contact_type="email", contact="a@example.com", list_ids=str(list_id)
        )
    ).json()
    assert "error" not in answer
    assert served.uni.list_members(KEY, list_id) == set()
    assert served.uni.list_members(KEY, other) == {"a@example.com"}
    contact = served.uni.contact(KEY, "a@example.com")
    assert contact is not None
    assert contact["status"] == "new"
    unknown = (
        await served.unisender(
            "exclude", contact_type="email", contact="ghost@example.com", list_ids=str(list_id)
        )
    ).json()
    assert unknown["code"] == "unspecified"
    assert "not found" in unknown["error"]


async def test_get_contact_reports_status_and_lists(served: Served) -> None:
    list_id = await new_list(served)
    await served.unisender("importContacts", **rows(["a@example.com"], list_id))
    answer = (
        await served.unisender(
            "getContact", email="A@example.com", include_lists="1", include_fields="1"
        )
    ).json()["result"]
    assert answer["email"]["email"] == "a@example.com"
    assert answer["email"]["status"] == "new"
    assert answer["email"]["availability"] == "available"
    assert [(m["id"], m["status"]) for m in answer["lists"]] == [(list_id, "active")]
    assert answer["fields"] == {"Name": "Person 0"}
    missing = (await served.unisender("getContact", email="ghost@example.com")).json()
    assert missing["code"] == "unspecified"
    assert "not found" in missing["error"]


async def test_per_key_calls_per_minute(served: Served) -> None:
    served.uni.rate_limit_rpm = 2
    codes = [(await served.unisender("getLists")).json().get("code") for _ in range(3)]
    assert codes == [None, None, "api_call_limit_exceeded_for_api_key"]
    assert served.uni.rate_limited == 1


async def test_injected_faults(served: Served) -> None:
    served.uni.add_fault(method="importContacts", status=503)
    served.uni.add_fault(method="getLists", code="retry_later", times=2)
    failed = await served.http.post("/ru/api/importContacts", data={"api_key": KEY})
    assert failed.status_code == 503
    first = (await served.unisender("getLists")).json()
    second = (await served.unisender("getLists")).json()
    third = (await served.unisender("getLists")).json()
    assert [first.get("code"), second.get("code"), third.get("code")] == [
        "retry_later",
        "retry_later",
        None,
    ]


@pytest.mark.parametrize("method", ["sendEmail", "nope"])
async def test_unknown_methods_are_errors(served: Served, method: str) -> None:
    assert (await served.unisender(method)).json()["code"] == "unknown_method"


async def test_arguments_may_come_in_the_query_string(served: Served) -> None:
    response = await served.http.get("/ru/api/getLists", params={"format": "json", "api_key": KEY})
    assert response.json() == {"result": []}
