"""The parser and the models against real amoCRM payloads (tests/fixtures/amocrm, SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from amosync.amocrm.models import ContactsResponse, TokenPair
from amosync.amocrm.webhooks import ContactChange, parse_webhook
from amosync.sync.mapping import contact_emails

CORPUS = Path(__file__).parent.parent / "fixtures" / "amocrm"
WEBHOOKS = sorted((CORPUS / "webhooks").glob("*.form"))


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


# What each corpus webhook means to amosync: its account and its contact changes.
EXPECTED: dict[str, tuple[int | None, str | None, list[ContactChange]]] = {
    "contact_update_linked_leads_tags.form": (
        None,
        "apfitness",
        [
            ContactChange(
                amocrm_id=22309159,
                action="upsert",
                raw_action="update",
                name="Иджян Илья Юрьевич",
                emails=["kloder3@gmail.com"],
                updated_at=1538066975,
            )
        ],
    ),
    "lead_status_bare_date_tags.form": (None, "apfitness", []),
    "contact_add_amocrm_webhooks_3.form": (
        32427762,
        "etesttask",
        [
            ContactChange(
                amocrm_id=37054081,
                action="upsert",
                raw_action="add",
                name="Абиба абибович",
                updated_at=1748289231,
            )
        ],
    ),
    "contact_update_code_after_values.form": (
        32427762,
        "etesttask",
        [
            ContactChange(
                amocrm_id=37054081,
                action="upsert",
                raw_action="update",
                name="Абиба абибович",
                emails=["444"],
                updated_at=1748292937,
            )
        ],
    ),
    "contact_add_without_fields.form": (
        None,
        "test000002",
        [
            ContactChange(
                amocrm_id=1112,
                action="upsert",
                raw_action="add",
                name="wqds",
                updated_at=1456824964,
            )
        ],
    ),
    "contact_restore_without_fields.form": (
        None,
        "test000002",
        # Nothing of the contact's fields came: its addresses must be read from the API.
        [
            ContactChange(
                amocrm_id=1065,
                action="fetch",
                raw_action="restore",
                name="Some name",
                updated_at=1456827128,
            )
        ],
    ),
    "company_add.form": (None, "test000002", []),
    "contact_add_linked_lead_kommo.form": (
        36398783,
        "rusvenezoficial",
        [
            ContactChange(
                amocrm_id=43684617913,
                action="upsert",
                raw_action="add",
                name="Cristian Aguilera",
                updated_at=1748800060,
            )
        ],
    ),
    "contact_delete.form": (
        30896271,
        "acme",
        [
            ContactChange(amocrm_id=35144366, action="delete", raw_action="delete"),
            ContactChange(amocrm_id=35144367, action="delete", raw_action="delete"),
        ],
    ),
    "contact_delete_only_id.form": (
        30896271,
        "acme",
        [ContactChange(amocrm_id=35144368, action="delete", raw_action="delete")],
    ),
    "contact_update_all_parts.form": (
        30896271,
        "acme",
        [
            ContactChange(
                amocrm_id=35144369,
                action="upsert",
                raw_action="update",
                name="Мария Соколова",
                emails=["maria.sokolova@example.com", "m.sokolova@corp.example"],
                updated_at=1733150000,
            )
        ],
    ),
}


def test_every_corpus_webhook_has_an_expectation() -> None:
    assert sorted(EXPECTED) == [path.name for path in WEBHOOKS]


@pytest.mark.parametrize("path", WEBHOOKS, ids=lambda path: path.stem)
def test_corpus_webhooks_parse_to_their_contact_changes(path: Path) -> None:
    account_id, subdomain, changes = EXPECTED[path.name]

    payload = parse_webhook(path.read_bytes())

    assert (payload.account_id, payload.subdomain) == (account_id, subdomain)
    assert payload.changes == changes


def test_a_restore_with_fields_is_an_upsert() -> None:
    """Only a restore without `custom_fields` needs the API; one with them is complete."""
    body = corpus("webhooks/contact_update_all_parts.form").replace(
        b"contacts%5Bupdate%5D", b"contacts%5Brestore%5D"
    )
    (change,) = parse_webhook(body).changes
    assert (change.action, change.raw_action) == ("upsert", "restore")
    assert change.emails == ["maria.sokolova@example.com", "m.sokolova@corp.example"]


# --- API pages --------------------------------------------------------------------------


def test_a_page_with_every_field_type_validates_and_yields_only_string_addresses() -> None:
    page = ContactsResponse.model_validate_json(corpus("api/contacts_page_every_field_type.json"))

    contacts = {contact.id: contact for contact in page.embedded.contacts}
    assert list(contacts) == [35144369, 35144370, 35144371, 722830]
    assert page.links.next is not None
    emails = {cid: contact_emails(c.custom_fields_values) for cid, c in contacts.items()}
    assert emails[35144369].valid == ["maria.sokolova@example.com", "M.Sokolova@Corp.Example"]
    assert emails[35144370].valid == ["petrov@example.com"]
    # Object, list, null and missing values of an EMAIL field are skipped, not the page.
    assert emails[35144371].valid == ["kept@example.com"]
    assert (emails[722830].valid, emails[722830].invalid) == ([], [])


def test_object_values_survive_validation_as_they_came() -> None:
    """Skipped by the mapping, but not mangled by the model (a later reader may want them)."""
    page = ContactsResponse.model_validate_json(corpus("api/contacts_page_every_field_type.json"))
    fields = {f["field_type"]: f for f in page.embedded.contacts[0].custom_fields_values or ()}
    legal = fields["legal_entity"]["values"][0]
    assert isinstance(legal, dict)
    assert legal["value"]["vat_id"] == "7701234567"
    assert fields["file"]["values"][0]["value"]["file_name"] == "dogovor.pdf"
    chained = fields["chained_list"]["values"][0]
    assert chained == {"catalog_id": 5067, "catalog_element_id": 1234567}


# --- OAuth ------------------------------------------------------------------------------


def test_the_token_body_validates() -> None:
    pair = TokenPair.model_validate_json(corpus("oauth/token.json"))
    assert (pair.token_type, pair.expires_in) == ("Bearer", 86400)
    assert pair.refresh_token.startswith("def50200")
