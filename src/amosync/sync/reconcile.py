"""Reconciliation: contacts amoCRM changed since the last pass, in case a webhook was lost.

amoCRM gives no guarantee that every webhook arrives. This pass reads the contacts modified
since the last successful pass (`filter[updated_at][from]`, with a minute of overlap for
clock skew) and applies those whose stored state differs from amoCRM's.
With a `lead_statuses` rule it also reads the deals in the wanted statuses again and
evaluates the contacts whose linked deals' statuses changed unseen.

It also checks our webhook at amoCRM (`GET /api/v4/webhooks`): amoCRM turns off a webhook
whose destination keeps failing (`disabled`), and a person can delete it. Either way it is
registered again, and shown (`amocrm_webhook_disabled` / `amocrm_webhook_missing`) until a
later pass finds it in place and on.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select, update

from amosync.accounts.install import register_webhooks, webhook_events, webhook_url
from amosync.accounts.problems import ProblemCode, clear_problem, set_problem
from amosync.accounts.service import read_active
from amosync.accounts.settings import account_settings
from amosync.accounts.tokens import amocrm_client
from amosync.accounts.unisender import account_client
from amosync.amocrm.client import AmoCRMClient
from amosync.db.engine import transaction
from amosync.db.models import Account, Contact, Integration, LeadLink
from amosync.errors import AmoCRMBlocked, AuthorizationRevoked, PermanentUpstreamError
from amosync.runtime.services import Services
from amosync.segments.engine import Segments
from amosync.segments.members import account_segments, linked_statuses
from amosync.sync.apply import Applier, ContactState, batches
from amosync.sync.fullsync import contact_state
from amosync.sync.leads import read_leads, reevaluate, replace_links

log = structlog.get_logger()

OVERLAP = timedelta(minutes=1)


async def reconcile(services: Services, account_id: int, *, since: datetime) -> int:
    """Apply contacts changed since `since` whose stored state differs. Returns that count."""
    async with services.sessions() as session:
        account = await session.get(Account, account_id)
    if account is None or account.list_id is None or account.unisender_key_enc is None:
        return 0
    segments = account_segments(account.settings, account.list_id)
    applier = Applier(
        account_id,
        account.list_id,
        account_client(services, account),
        services.sessions,
        segments,
    )
    amocrm = await amocrm_client(services, account_id)
    updated_from = int((since - OVERLAP).timestamp())
    changed = 0
    async for page in amocrm.iter_contacts(updated_from=updated_from):
        async with services.sessions() as session:
            statuses = None
            if segments is not None and segments.wants_leads:
                ids = [c.id for c in page.contacts]
                statuses = await linked_statuses(session, account_id, ids)
            states = {c.id: contact_state(c, segments, statuses) for c in page.contacts}
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
            if (
                row is None
                or row.emails != state.emails
                or row.name != state.name
                # A tag that came or went changes what segment lists it is in.
                or (applier.tracking and (row.tags or []) != (state.tags or []))
            ):
                differing.append(state)
        for batch in batches(differing):
            async with transaction(services.sessions) as session:
                await applier.apply(session, batch)
        changed += len(differing)
    if segments is not None and segments.wants_leads:
        changed += await reconcile_leads(services, account_id, applier, segments, amocrm)
    if changed:
        log.info("reconcile.applied", account_id=account_id, contacts=changed)
    return changed


async def reconcile_leads(
    services: Services,
    account_id: int,
    applier: Applier,
    segments: Segments,
    amocrm: AmoCRMClient,
) -> int:
    """Lead webhooks can be lost too: the deals in the wanted statuses are read again (the
    leads filter, a few pages) and the contacts whose linked statuses differ from what is
    stored are evaluated again. Returns how many."""
    read = await read_leads(amocrm, account_id, segments.wanted_statuses())
    async with transaction(services.sessions) as session:
        rows = await session.execute(
            select(LeadLink.contact_id, LeadLink.pipeline_id, LeadLink.status_id).where(
                LeadLink.account_id == account_id
            )
        )
        stored: dict[int, set[tuple[int, int]]] = defaultdict(set)
        for contact_id, pipeline_id, status_id in rows:
            stored[contact_id].add((pipeline_id, status_id))
        differing = sorted(
            contact_id
            for contact_id in set(stored) | set(read.statuses)
            if stored.get(contact_id, set()) != read.statuses.get(contact_id, set())
        )
        await replace_links(session, account_id, read.links)
        await reevaluate(session, account_id, applier, segments, differing)
    return len(differing)


WEBHOOK_PROBLEMS = (ProblemCode.amocrm_webhook_missing, ProblemCode.amocrm_webhook_disabled)


async def check_webhooks(services: Services, account_id: int) -> ProblemCode | None:
    """Register our webhook again if amoCRM lost or disabled it; returns what was wrong."""
    account = await read_active(services, account_id)
    if (
        account is None
        or account.webhook_token_enc is None
        or not services.settings.webhook_base_url  # no address to register: nothing to check
    ):
        return None
    destination = webhook_url(services, services.cipher.decrypt(account.webhook_token_enc))
    amocrm = await amocrm_client(services, account_id)
    try:
        hooks = await amocrm.webhooks()
    except (AuthorizationRevoked, AmoCRMBlocked):
        raise
    except PermanentUpstreamError as exc:
        # Listing webhooks is for account administrators only: a token of another user is
        # refused. That says nothing about the webhook, so the pass goes on without it.
        log.info("reconcile.webhooks.unreadable", account_id=account_id, error=str(exc))
        return None
    ours = [hook for hook in hooks if hook.destination == destination]
    if ours and not any(hook.disabled for hook in ours):
        wanted = set(webhook_events(account_settings(account.settings)))
        if any(set(hook.settings) != wanted for hook in ours):
            # Lead events missing or left over (a change of the rules whose registration
            # failed): not a problem a person must act on, only a registration to redo.
            log.info("reconcile.webhook.events_updated", account_id=account_id)
            await register_webhooks(services, account_id)
        async with transaction(services.sessions) as session:
            await clear_problem(session, account_id, *WEBHOOK_PROBLEMS)
        return None
    if ours:
        found = ProblemCode.amocrm_webhook_disabled
        detail = (
            "amoCRM turned off amosync's webhook (its deliveries kept failing), so changes "
            "stopped arriving; amosync registered it again: check that amoCRM can reach "
            f"{services.settings.webhook_base_url} if this comes back"
        )
    else:
        found = ProblemCode.amocrm_webhook_missing
        detail = (
            "amosync's webhook was missing in amoCRM (deleted in Settings → Integrations?), "
            "so changes stopped arriving; amosync registered it again"
        )
    log.warning("reconcile.webhook.restored", account_id=account_id, problem=str(found))
    async with transaction(services.sessions) as session:
        await set_problem(session, account_id, found, detail)
        await session.execute(
            update(Integration)
            .where(Integration.account_id == account_id)
            .values(webhook_registered=False)
        )
    # Changes made meanwhile were never posted: the contacts pass that follows finds them.
    await register_webhooks(services, account_id)
    return found
