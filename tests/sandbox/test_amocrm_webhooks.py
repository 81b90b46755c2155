"""Webhook registration through the API, and real-format webhooks posted on changes."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from tests.sandbox.conftest import ACCOUNT_ID, Receiver, Served

EVENTS = ["add_contact", "update_contact", "delete_contact", "restore_contact"]


async def subscribe(served: Served, token: str, destination: str, settings: list[str]) -> None:
    response = await served.api(
        "POST", "/api/v4/webhooks", token, json={"destination": destination, "settings": settings}
    )
    assert response.status_code == 200, response.text


async def listening(
    served: Served, token: str, receiver: tuple[Receiver, str], settings: list[str]
) -> Receiver:
    """The receiver, once registered through the API for the `settings` events."""
    hooks, destination = receiver
    await subscribe(served, token, destination, settings)
    return hooks


async def test_webhooks_are_registered_listed_and_removed(served: Served, token: str) -> None:
    destination = "https://amosync.example.test/webhook?token=abc"
    await subscribe(served, token, destination, EVENTS)
    await subscribe(served, token, destination, EVENTS[:2])  # the same destination: updated
    listed = (await served.api("GET", "/api/v4/webhooks", token)).json()
    assert listed["_total_items"] == 1
    (hook,) = listed["_embedded"]["webhooks"]
    assert (hook["destination"], hook["settings"]) == (destination, EVENTS[:2])
    assert served.amo.webhooks(ACCOUNT_ID)[0]["destination"] == destination

    removed = await served.api(
        "DELETE", "/api/v4/webhooks", token, json={"destination": destination}
    )
    assert removed.status_code == 204
    assert served.amo.webhooks(ACCOUNT_ID) == []
    again = await served.api("DELETE", "/api/v4/webhooks", token, json={"destination": destination})
    assert again.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"destination": "not a url", "settings": ["add_contact"]},
        {"destination": "https://x.test/h", "settings": []},
        {"destination": "https://x.test/h", "settings": ["explode"]},
        {"settings": ["add_contact"]},
    ],
)
async def test_bad_webhook_registrations_are_refused(
    served: Served, token: str, body: dict[str, object]
) -> None:
    response = await served.api("POST", "/api/v4/webhooks", token, json=body)
    assert response.status_code == 400
    assert served.amo.webhooks(ACCOUNT_ID) == []


async def test_contact_changes_post_real_format_webhooks(
    served: Served, token: str, receiver: tuple[Receiver, str]
) -> None:
    hooks = await listening(served, token, receiver, EVENTS)
    amo = served.amo
    amo.restore_without_fields = 0.0  # every restore carries the contact's fields
    ann = amo.add_contact(ACCOUNT_ID, "Ann Lee", emails=["ann@example.com"], phones=["+7 900"])
    amo.update_contact(ACCOUNT_ID, ann["id"], emails=["ann@new.example", "a2@new.example"])
    amo.delete_contact(ACCOUNT_ID, ann["id"])
    amo.restore_contact(ACCOUNT_ID, ann["id"])
    await amo.flush_webhooks()

    assert [content_type for content_type, _ in hooks.received] == [
        "application/x-www-form-urlencoded"
    ] * 4
    add, update, delete, restore = (form for _, form in hooks.received)
    prefix = "contacts[add][0]"
    assert add[f"{prefix}[id]"] == str(ann["id"])
    assert add[f"{prefix}[name]"] == "Ann Lee"
    assert add[f"{prefix}[type]"] == "contact"
    assert add[f"{prefix}[date_create]"] == str(ann["created_at"])
    assert {"last_modified", "responsible_user_id", "created_user_id"} <= {
        key.removeprefix(prefix + "[").removesuffix("]") for key in add
    }
    # The phone field comes first: e-mail fields must be matched by code, not position.
    assert add[f"{prefix}[custom_fields][0][code]"] == "PHONE"
    assert add[f"{prefix}[custom_fields][1][code]"] == "EMAIL"
    assert add[f"{prefix}[custom_fields][1][id]"] == "264911"
    assert add[f"{prefix}[custom_fields][1][values][0][value]"] == "ann@example.com"
    assert add[f"{prefix}[custom_fields][1][values][0][enum]"] == "524203"
    for form in (add, update, delete, restore):
        assert form["account[id]"] == str(ACCOUNT_ID)
        assert form["account[subdomain]"] == "acme"
        assert form["account[_links][self]"] == "https://acme.amocrm.ru"

    assert update["contacts[update][0][custom_fields][1][values][1][value]"] == "a2@new.example"
    assert {k: v for k, v in delete.items() if k.startswith("contacts")} == {
        "contacts[delete][0][id]": str(ann["id"]),
        "contacts[delete][0][type]": "contact",
    }
    assert restore["contacts[restore][0][custom_fields][1][values][0][value]"] == "ann@new.example"
    assert [d.status for d in amo.deliveries] == [200] * 4
    assert served.sandbox.calls.count_where(api="webhook", path="/webhook", status=200) == 4


async def test_a_share_of_restores_come_without_custom_fields(
    served: Served, token: str, receiver: tuple[Receiver, str]
) -> None:
    """As in tests/fixtures/amocrm/webhooks/contact_restore_without_fields.form."""
    hooks = await listening(served, token, receiver, ["restore_contact"])
    amo = served.amo
    contacts = [
        amo.add_contact(ACCOUNT_ID, f"C{n}", emails=[f"c{n}@example.com"]) for n in range(40)
    ]
    for contact in contacts:
        amo.delete_contact(ACCOUNT_ID, contact["id"])
        amo.restore_contact(ACCOUNT_ID, contact["id"])
    await amo.flush_webhooks()

    bare = [form for _, form in hooks.received if not any("[custom_fields]" in key for key in form)]
    assert 0.2 < len(bare) / len(hooks.received) < 0.8
    assert set(bare[0]) >= {"contacts[restore][0][id]", "contacts[restore][0][name]"}
    amo.restore_without_fields = 1.0
    body = amo.webhook_body(ACCOUNT_ID, "restore", contacts[0]["id"])
    assert b"custom_fields" not in body


async def test_only_subscribed_events_are_sent(
    served: Served, token: str, receiver: tuple[Receiver, str]
) -> None:
    hooks = await listening(served, token, receiver, ["delete_contact"])
    bob = served.amo.add_contact(ACCOUNT_ID, "Bob", emails=["bob@example.com"])
    served.amo.delete_contact(ACCOUNT_ID, bob["id"])
    await served.amo.flush_webhooks()
    assert [list(form)[0] for _, form in hooks.received] == ["contacts[delete][0][id]"]


async def test_switched_off_webhooks_are_not_sent_but_bodies_can_be_built(
    served: Served, token: str, receiver: tuple[Receiver, str]
) -> None:
    hooks = await listening(served, token, receiver, EVENTS)
    amo = served.amo
    amo.webhooks_enabled = False
    bob = amo.add_contact(ACCOUNT_ID, "Bob", emails=["bob@example.com"])
    await amo.flush_webhooks()
    assert hooks.received == []
    body = dict(parse_qsl(amo.webhook_body(ACCOUNT_ID, "update", bob["id"]).decode()))
    assert body["contacts[update][0][custom_fields][0][values][0][value]"] == "bob@example.com"
    assert body["account[id]"] == str(ACCOUNT_ID)


async def test_a_failing_receiver_is_recorded(
    served: Served, token: str, receiver: tuple[Receiver, str]
) -> None:
    hooks = await listening(served, token, receiver, EVENTS)
    hooks.status = 500
    await subscribe(served, token, "http://127.0.0.1:9/closed", EVENTS)  # nothing listens
    served.amo.add_contact(ACCOUNT_ID, "Eve", emails=["eve@example.com"])
    await served.amo.flush_webhooks()
    outcomes = {d.destination.split("/")[-1]: (d.status, d.error) for d in served.amo.deliveries}
    assert outcomes["webhook?token=secret-1"] == (500, None)
    status, error = outcomes["closed"]
    assert status is None
    assert error is not None
    assert "ConnectError" in error
