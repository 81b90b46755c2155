"""The corpus of real amoCRM webhooks, posted to the service over HTTP and applied.

Every body of tests/fixtures/amocrm/webhooks (SOURCES.md names where each comes from) is
posted as amoCRM posts it, with the account's webhook token; the worker then applies them
and the sandbox's Unisender list must hold exactly the addresses they mean.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from amosync.db.models import Contact, PendingChange
from tests.stack import ACCOUNT_ID, Stack, stack

WEBHOOKS = Path(__file__).parent.parent / "fixtures" / "amocrm" / "webhooks"
HEADERS = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": ""}
# The order amoCRM would have sent them in: adds, then changes, then deletions and restores.
ORDER = [
    "contact_add_amocrm_webhooks_3.form",
    "contact_add_without_fields.form",
    "company_add.form",
    "contact_add_linked_lead_kommo.form",
    "lead_add.form",
    "contact_update_code_after_values.form",
    "contact_update_linked_leads_tags.form",
    "contact_update_all_parts.form",
    "lead_update.form",
    "lead_status.form",
    "lead_status_bare_date_tags.form",
    "lead_delete_only_id.form",
    "contact_delete.form",
    "contact_delete_only_id.form",
    "contact_restore_without_fields.form",
]


async def post(s: Stack, body: bytes) -> dict[str, object]:
    url = s.sandbox.amocrm.webhooks(ACCOUNT_ID)[0]["destination"]
    response = await s.http.post(url, content=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def contact_states(s: Stack) -> dict[int, tuple[str, str | None]]:
    async with s.services.sessions() as session:
        rows = await session.execute(select(Contact.amocrm_id, Contact.state, Contact.reason))
        return {amocrm_id: (state, reason) for amocrm_id, state, reason in rows}


async def test_every_corpus_webhook_is_stored_and_applied(database_url: str) -> None:
    assert sorted(ORDER) == sorted(path.name for path in WEBHOOKS.glob("*.form"))
    async with stack(database_url) as s:
        await s.connect()
        amo = s.sandbox.amocrm
        # The contacts the deletions and the restore are about, first synced as usual. The
        # restored one is in the sandbox's trash, then restored without a webhook: the
        # corpus's restore (which carries no fields) is the one the service gets.
        restored = amo.add_contact(
            ACCOUNT_ID, name="Some name", emails=["restored@example.com"], contact_id=1065
        )
        for n, contact_id in enumerate((35144366, 35144367, 35144368)):
            amo.add_contact(
                ACCOUNT_ID, name=f"Del {n}", emails=[f"del{n}@example.com"], contact_id=contact_id
            )
        amo.delete_contact(ACCOUNT_ID, restored["id"])
        await amo.flush_webhooks()
        await s.settle()
        assert s.members() == {"del0@example.com", "del1@example.com", "del2@example.com"}
        amo.webhooks_enabled = False
        amo.restore_contact(ACCOUNT_ID, restored["id"])

        answers = {name: await post(s, (WEBHOOKS / name).read_bytes()) for name in ORDER}
        await s.settle()

        assert answers["contact_update_linked_leads_tags.form"]["accepted"] == 1
        assert answers["contact_delete.form"]["deleted"] == 2
        assert answers["company_add.form"]["accepted"] == 0
        assert answers["lead_status_bare_date_tags.form"]["accepted"] == 0
        assert s.members() == {
            "kloder3@gmail.com",
            "maria.sokolova@example.com",
            "m.sokolova@corp.example",
            "restored@example.com",
        }
        states = await contact_states(s)
        assert states[22309159] == ("synced", None)
        assert states[35144369] == ("synced", None)
        assert states[1065] == ("synced", None)
        assert states[37054081] == ("unsynced", "invalid_email")  # its EMAIL value is "444"
        assert states[1112] == ("unsynced", "no_email")
        assert states[43684617913] == ("unsynced", "no_email")  # a phone, a linked deal
        assert 1110 not in states  # a company
        for deleted in (35144366, 35144367, 35144368):
            assert deleted not in states or states[deleted][0] != "synced"
        async with s.services.sessions() as session:
            assert (await session.execute(select(PendingChange))).first() is None


async def test_a_restore_of_a_contact_amocrm_no_longer_has_excludes_it(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.connect()
        amo = s.sandbox.amocrm
        amo.add_contact(ACCOUNT_ID, name="Some name", emails=["gone@example.com"], contact_id=1065)
        await amo.flush_webhooks()
        await s.settle()
        assert s.members() == {"gone@example.com"}
        amo.webhooks_enabled = False
        amo.delete_contact(ACCOUNT_ID, 1065)  # deleted again before the restore is applied

        await post(s, (WEBHOOKS / "contact_restore_without_fields.form").read_bytes())
        await s.settle()

        assert s.members() == set()
