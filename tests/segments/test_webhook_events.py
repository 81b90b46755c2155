"""The events of the account's amoCRM webhook follow the rules (SPEC §8): lead events while
a rule reads leads, none otherwise, whichever path registers it."""

from __future__ import annotations

from amosync.accounts.install import LEAD_EVENTS, WEBHOOK_EVENTS, webhook_events
from amosync.accounts.settings import AccountSettings
from amosync.db.models import AccountProblem
from amosync.sync.reconcile import check_webhooks
from tests.stack import ACCOUNT_ID, Stack, stack

LEAD_RULE = {"list_id": 5, "lead_statuses": [{"pipeline_id": 7, "status_id": 142}]}


def test_lead_events_only_while_a_rule_reads_leads() -> None:
    assert webhook_events(AccountSettings()) == WEBHOOK_EVENTS
    tags_only = AccountSettings.model_validate({"lists": [{"list_id": 5, "tags_any": ["vip"]}]})
    assert webhook_events(tags_only) == WEBHOOK_EVENTS
    leads = AccountSettings.model_validate({"lists": [LEAD_RULE]})
    assert webhook_events(leads) == WEBHOOK_EVENTS + LEAD_EVENTS
    assert set(LEAD_EVENTS) == {
        "add_lead",
        "update_lead",
        "status_lead",
        "delete_lead",
        "restore_lead",
    }


def registered(s: Stack) -> list[list[str]]:
    return [sorted(hook["settings"]) for hook in s.sandbox.amocrm.webhooks(ACCOUNT_ID)]


async def test_reconciliation_brings_the_events_in_line_with_the_rules(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        await s.install()
        assert registered(s) == [sorted(WEBHOOK_EVENTS)]
        # Rules changed while their registration could not happen (amoCRM down, say).
        await s.store_settings({"lists": [LEAD_RULE]})
        assert await check_webhooks(s.services, ACCOUNT_ID) is None
        assert registered(s) == [sorted(WEBHOOK_EVENTS + LEAD_EVENTS)]
        await s.store_settings({"lists": [{"list_id": 5, "tags_any": ["vip"]}]})
        assert await check_webhooks(s.services, ACCOUNT_ID) is None
        assert registered(s) == [sorted(WEBHOOK_EVENTS)]
        # Events to update are not a problem a person must act on.
        assert await s.count(AccountProblem) == 0


async def test_a_lost_webhook_comes_back_with_the_lead_events(database_url: str) -> None:
    async with stack(database_url) as s:
        await s.install()
        await s.store_settings({"lists": [LEAD_RULE]})
        hook = s.sandbox.amocrm.webhooks(ACCOUNT_ID)[0]
        s.sandbox.amocrm.unsubscribe(ACCOUNT_ID, hook["destination"])
        assert await check_webhooks(s.services, ACCOUNT_ID) is not None
        assert registered(s) == [sorted(WEBHOOK_EVENTS + LEAD_EVENTS)]
