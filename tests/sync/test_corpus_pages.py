"""A full sync over the sandbox of contacts with every custom field type of the corpus.

The contacts are those of tests/fixtures/amocrm/api/contacts_page_every_field_type.json
(SOURCES.md): file and legal-entity fields whose `values[].value` is an object, a chained list
without `value`, a list value, an EMAIL field holding an object and a list. One such contact
used to fail its whole 250-contact page, and with it the account's full sync.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.stack import ACCOUNT_ID, stack

PAGE = Path(__file__).parent.parent / "fixtures" / "amocrm" / "api"


async def test_a_page_with_file_and_legal_entity_fields_syncs(database_url: str) -> None:
    page = json.loads((PAGE / "contacts_page_every_field_type.json").read_text())
    async with stack(database_url) as s:
        await s.install()
        amo = s.sandbox.amocrm
        for contact in page["_embedded"]["contacts"]:
            amo.add_contact(
                ACCOUNT_ID,
                name=contact["name"],
                custom_fields_values=contact["custom_fields_values"],
                contact_id=contact["id"] if contact["id"] > 1_000_000 else None,
            )
        amo.generate_contacts(ACCOUNT_ID, 300, seed=12)  # the odd ones share page 1
        await s.connect_unisender()
        await s.settle()

        account = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()
        assert account["last_sync"]["status"] == "done", account["last_sync"]
        assert account["last_sync"]["fetched"] == 304
        members = s.members()
        assert {
            "maria.sokolova@example.com",
            "m.sokolova@corp.example",
            "petrov@example.com",
            "kept@example.com",
        } <= members
        assert "object@example.com" not in members
        assert "list@example.com" not in members
