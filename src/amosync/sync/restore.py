"""Restored contacts whose webhook did not say what they hold (SPEC §5).

amoCRM may post a `restore` with only the contact's id, name and times, no `custom_fields`
(tests/fixtures/amocrm/webhooks/contact_restore_without_fields.form). The parser marks such a
change `fetch`; before the worker applies it, the contact is read from the API and the
change becomes the contact's state as amoCRM holds it now, or a deletion when amoCRM no
longer has it (deleted again meanwhile).
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from amosync.accounts.tokens import amocrm_client
from amosync.db.models import PendingChange
from amosync.runtime.services import Services
from amosync.sync.mapping import EMAIL_CODE, email_values

log = structlog.get_logger()

NAME_LENGTH = 512  # pending_changes.name and contacts.name


async def read_restored(
    services: Services, account_id: int, changes: Sequence[PendingChange]
) -> None:
    """Turn the `fetch` changes among `changes` into upserts or deletes, in place."""
    wanted = [change for change in changes if change.action == "fetch"]
    if not wanted:
        return
    client = await amocrm_client(services, account_id)
    gone = 0
    for change in wanted:
        contact = await client.get_contact(change.amocrm_id)
        if contact is None:
            # What amoCRM says now, whatever time the webhook carried: like any delete, it
            # carries no time, so no stored state can make it look stale.
            change.action = "delete"
            change.amocrm_updated_at = None
            gone += 1
            continue
        change.action = "upsert"
        change.name = contact.name[:NAME_LENGTH] if contact.name else contact.name
        change.emails = email_values(contact.custom_fields_values)
        fields = [
            dict(item)
            for item in contact.custom_fields_values or ()
            if item.get("field_code") != EMAIL_CODE
        ]
        change.data = {"tags": contact.tags, "fields": fields} if contact.tags or fields else None
        change.amocrm_updated_at = contact.updated_at or change.amocrm_updated_at
    log.info("webhook.restored.read", account_id=account_id, contacts=len(wanted), gone=gone)
