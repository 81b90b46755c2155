"""amoCRM over HTTP: `PATCH /api/v4/contacts` with `tags_to_add` (other tags kept) and
`POST /api/v4/contacts/notes`, both visible through the contact and the controls."""

from __future__ import annotations

from tests.sandbox.conftest import ACCOUNT_ID, Served


async def test_tags_to_add_keeps_the_other_tags(served: Served, token: str) -> None:
    ann = served.amo.add_contact(ACCOUNT_ID, "Ann", emails=["ann@example.com"])
    first = await served.api(
        "PATCH",
        "/api/v4/contacts",
        token,
        json=[{"id": ann["id"], "tags_to_add": [{"name": "vip"}]}],
    )
    assert first.status_code == 200, first.text
    answer = await served.api(
        "PATCH",
        "/api/v4/contacts",
        token,
        json=[{"id": ann["id"], "tags_to_add": [{"name": "unsubscribed"}, {"name": "VIP"}]}],
    )
    assert answer.status_code == 200, answer.text
    (edited,) = answer.json()["_embedded"]["contacts"]
    assert edited["id"] == ann["id"]
    assert edited["request_id"] == "0"
    assert served.amo.tags(ACCOUNT_ID, ann["id"]) == ["vip", "unsubscribed"]
    shown = (await served.api("GET", f"/api/v4/contacts/{ann['id']}", token)).json()
    assert [tag["name"] for tag in shown["_embedded"]["tags"]] == ["vip", "unsubscribed"]
    assert all(isinstance(tag["id"], int) for tag in shown["_embedded"]["tags"])
    control = await served.http.get(
        f"/_sandbox/amocrm/accounts/{ACCOUNT_ID}/contacts/{ann['id']}/tags"
    )
    assert control.json() == ["vip", "unsubscribed"]


async def test_an_edit_of_an_unknown_contact_is_a_validation_error(
    served: Served, token: str
) -> None:
    answer = await served.api(
        "PATCH", "/api/v4/contacts", token, json=[{"id": 999, "tags_to_add": [{"name": "x"}]}]
    )
    assert answer.status_code == 400
    assert answer.json()["validation-errors"][0]["errors"][0]["path"] == "0.id"
    assert (await served.api("PATCH", "/api/v4/contacts", token, json={"id": 1})).status_code == 400


async def test_common_notes_are_added_and_listed(served: Served, token: str) -> None:
    ann = served.amo.add_contact(ACCOUNT_ID, "Ann", emails=["ann@example.com"])
    answer = await served.api(
        "POST",
        "/api/v4/contacts/notes",
        token,
        json=[{"entity_id": ann["id"], "note_type": "common", "params": {"text": "Unsubscribed"}}],
    )
    assert answer.status_code == 200, answer.text
    (created,) = answer.json()["_embedded"]["notes"]
    assert created["entity_id"] == ann["id"]
    assert isinstance(created["id"], int)
    notes = (await served.http.get(f"/_sandbox/amocrm/accounts/{ACCOUNT_ID}/notes")).json()
    assert [(n["entity_id"], n["note_type"], n["params"]) for n in notes] == [
        (ann["id"], "common", {"text": "Unsubscribed"})
    ]
    missing_text = await served.api(
        "POST",
        "/api/v4/contacts/notes",
        token,
        json=[{"entity_id": ann["id"], "note_type": "common"}],
    )
    assert missing_text.status_code == 400
