"""Reconciliation: contacts amoCRM changed since the last pass, in case a webhook was lost.

amoCRM gives no guarantee that every webhook arrives. This pass reads the contacts modified
since the last successful pass (`filter[updated_at][from]`, with a minute of overlap for
clock skew) and applies those whose stored state differs from amoCRM's.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from sqlalchemy import select

from amosync.accounts.tokens import amocrm_client
from amosync.accounts.unisender import account_client
from amosync.db.engine import transaction
from amosync.db.models import Account, Contact
from amosync.state import Services
from amosync.sync.apply import Applier, ContactState, batches
from amosync.sync.fullsync import contact_state

log = structlog.get_logger()

OVERLAP = timedelta(minutes=1)


async def reconcile(services: Services, account_id: int, *, since: datetime) -> int:
    """Apply contacts changed since `since` whose stored state differs. Returns that count."""
    async with services.sessions() as session:
        account = await session.get(Account, account_id)
    if account is None or account.list_id is None or account.unisender_key_enc is None:
        return 0
    applier = Applier(
        account_id, account.list_id, account_client(services, account), services.sessions
    )
    amocrm = await amocrm_client(services, account_id)
    updated_from = int((since - OVERLAP).timestamp())
    changed = 0
    async for page in amocrm.iter_contacts(updated_from=updated_from):
        states = {c.id: contact_state(c) for c in page.contacts}
        async with services.sessions() as session:
            stored = {
                row.amocrm_id: row
                for row in (
                    await session.execute(
                        select(Contact).where(
                            Contact.account_id == account_id, Contact.amocrm_id.in_(list(states))
                        )
                    )
                ).scalars()
            }
        differing: list[ContactState] = []
        for amocrm_id, state in states.items():
            row = stored.get(amocrm_id)
            if row is None or row.emails != state.emails or row.name != state.name:
                differing.append(state)
        for batch in batches(differing):
            async with transaction(services.sessions) as session:
                await applier.apply(session, batch)
        changed += len(differing)
    if changed:
        log.info("reconcile.applied", account_id=account_id, contacts=changed)
    return changed
