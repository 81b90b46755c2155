"""The sandbox's amoCRM shapes agree with the corpus of real payloads (tests/fixtures/amocrm).

Its pages and webhooks carry what real ones carry (linked deals and companies, tags, file and
legal-entity fields), parse the way the corpus parses, and use no key layout the corpus does
not have, except the one assumption SOURCES.md and sandbox/render.py name.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qsl

from amosync.amocrm.models import ContactsResponse
from amosync.amocrm.webhooks import parse_webhook
from amosync.sandbox import Sandbox
from amosync.sandbox.contacts import field_values
from amosync.sync.mapping import email_values
from tests.sandbox.conftest import ACCOUNT_ID, Served

CORPUS = Path(__file__).parent.parent / "fixtures" / "amocrm"


def layout(key: str) -> str:
    """A key with its indices and entity ids as `#`: `contacts[update][#][tags][#][name]`."""
    return re.sub(r"\[\d+\]", "[#]", key)


def corpus_layouts() -> set[str]:
    layouts = set()
    for path in (CORPUS / "webhooks").glob("*.form"):
        for key, _ in parse_qsl(path.read_text(), keep_blank_values=True):
            layouts.add(
                re.sub(r"^contacts\[(add|update|restore)\]", "contacts[ACTION]", layout(key))
            )
    return layouts


# Rendered as PHP's http_build_query would; no real webhook with an object value was found.
ASSUMED = re.compile(
    r"^contacts\[ACTION\]\[#\]\[custom_fields\]\[#\]\[values\]\[#\]\[value\]\[\w+\]$"
)


def generated(n: int = 2000) -> Sandbox:
    sandbox = Sandbox()
    sandbox.amocrm.add_account(account_id=ACCOUNT_ID, subdomain="acme")
    sandbox.amocrm.generate_contacts(ACCOUNT_ID, n, seed=5)
    return sandbox


def test_generated_contacts_carry_links_tags_and_object_valued_fields() -> None:
    sandbox = generated()
    store = sandbox.amocrm.account(ACCOUNT_ID).contacts
    shapes: Counter[str] = Counter()
    for position in range(len(store.ids)):
        data = store.data(position)
        shapes["leads"] += bool(data.leads)
        shapes["companies"] += bool(data.companies)
        shapes["tags"] += bool(data.tags)
        types = {f.get("field_type") for f in data.custom_fields or ()}
        shapes["legal_entity"] += "legal_entity" in types
        shapes["file"] += "file" in types
    total = len(store.ids)
    assert 0.25 < shapes["leads"] / total < 0.35
    assert 0.08 < shapes["companies"] / total < 0.16
    assert 0.20 < shapes["tags"] / total < 0.30
    assert 0.02 < shapes["legal_entity"] / total < 0.06
    assert 0.015 < shapes["file"] / total < 0.05
    # The account knows the tags its contacts carry (PATCH tags_to_add finds them by name).
    tags = sandbox.amocrm.account(ACCOUNT_ID).tags
    assert all(tag["name"].lower() in tags for p in range(50) for tag in store.data(p).tags)


async def test_pages_have_the_corpus_shapes_and_validate(served: Served, token: str) -> None:
    served.amo.generate_contacts(ACCOUNT_ID, 250, seed=5)
    response = await served.api("GET", "/api/v4/contacts", token, params={"limit": 250})
    body = response.json()
    contacts = body["_embedded"]["contacts"]
    assert any(c["_embedded"]["tags"] for c in contacts)
    assert any(c["_embedded"]["companies"] for c in contacts)
    assert all("leads" not in c["_embedded"] for c in contacts)  # only with=leads
    values = {
        f["field_type"]: f["values"][0]["value"]
        for c in contacts
        for f in c["custom_fields_values"] or ()
    }
    corpus = ContactsResponse.model_validate_json(
        (CORPUS / "api" / "contacts_page_every_field_type.json").read_bytes()
    )
    real = {
        f["field_type"]: f["values"][0]["value"]
        for f in corpus.contacts[0].custom_fields_values or ()
        if f.get("field_type") in ("legal_entity", "file")
    }
    for field_type in ("legal_entity", "file"):
        assert isinstance(values[field_type], dict)
        assert set(values[field_type]) <= set(real[field_type]), field_type
    company = next(c for c in contacts if c["_embedded"]["companies"])
    assert set(company["_embedded"]["companies"][0]) == {"id", "_links"}
    tag = next(c for c in contacts if c["_embedded"]["tags"])["_embedded"]["tags"][0]
    assert set(tag) == {"id", "name", "color"}

    page = ContactsResponse.model_validate_json(response.content)
    by_id = {c["id"]: c for c in contacts}
    for contact in page.contacts:
        expected = field_values(by_id[contact.id]["custom_fields_values"], "EMAIL")
        assert email_values(contact.custom_fields_values) == [e.strip() for e in expected]


async def test_with_leads_embeds_the_linked_deals(served: Served, token: str) -> None:
    served.amo.generate_contacts(ACCOUNT_ID, 100, seed=5)
    response = await served.api(
        "GET", "/api/v4/contacts", token, params={"limit": 100, "with": "leads"}
    )
    contacts = response.json()["_embedded"]["contacts"]
    linked = [c for c in contacts if c["_embedded"]["leads"]]
    assert linked
    assert set(linked[0]["_embedded"]["leads"][0]) == {"id", "_links"}
    store = served.amo.account(ACCOUNT_ID).contacts
    for contact in linked:
        data = store.data(store.position(contact["id"]))  # type: ignore[arg-type]
        assert [lead["id"] for lead in contact["_embedded"]["leads"]] == list(data.leads)


def test_webhook_bodies_parse_like_the_corpus_and_use_its_key_layouts() -> None:
    sandbox = generated(3000)
    amo = sandbox.amocrm
    store = amo.account(ACCOUNT_ID).contacts
    known = corpus_layouts()
    seen: Counter[str] = Counter()
    for position in range(len(store.ids)):
        contact_id = store.ids[position]
        data = store.data(position)
        body = amo.webhook_body(ACCOUNT_ID, "update", contact_id)
        (change,) = parse_webhook(body).changes
        addresses = [a.strip() for a in field_values(data.custom_fields, "EMAIL") if a.strip()]
        assert (change.amocrm_id, change.action, change.emails) == (contact_id, "upsert", addresses)
        for key, _ in parse_qsl(body.decode(), keep_blank_values=True):
            shape = re.sub(r"^contacts\[update\]", "contacts[ACTION]", layout(key))
            seen[shape] += 1
            assert shape in known or ASSUMED.match(shape), shape
    # The shapes the issue names are all in the sandbox's webhooks.
    for wanted in (
        "contacts[ACTION][#][linked_leads_id][#][ID]",
        "contacts[ACTION][#][linked_company_id]",
        "contacts[ACTION][#][tags][#][name]",
        "contacts[ACTION][#][custom_fields][#][code]",
        "contacts[ACTION][#][custom_fields][#][values][#][value][file_name]",
        "contacts[ACTION][#][custom_fields][#][values][#][value][vat_id]",
    ):
        assert seen[wanted], wanted


def test_deletes_and_restores_parse_like_the_corpus() -> None:
    sandbox = generated(10)
    amo = sandbox.amocrm
    store = amo.account(ACCOUNT_ID).contacts
    contact_id = next(
        store.ids[p] for p in range(len(store.ids)) if store.data(p).custom_fields is not None
    )
    (delete,) = parse_webhook(amo.webhook_body(ACCOUNT_ID, "delete", contact_id)).changes
    assert (delete.amocrm_id, delete.action) == (contact_id, "delete")
    for share, action in ((0.0, "upsert"), (1.0, "fetch")):
        amo.restore_without_fields = share
        body = amo.webhook_body(ACCOUNT_ID, "restore", contact_id)
        (restore,) = parse_webhook(body).changes
        assert (restore.raw_action, restore.action) == ("restore", action)
