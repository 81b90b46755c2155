"""The reconciliation pass finds our webhook disabled or gone at amoCRM, registers it
again, and shows it in `problems` until a later pass finds it working. Over real HTTP
against the sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from amosync.amocrm.models import Webhook, WebhooksResponse
from tests.stack import ACCOUNT_ID, Stack, stack

FIXTURE = Path(__file__).parent.parent / "fixtures" / "amocrm" / "webhooks" / "list.json"


def test_the_documented_webhook_list_parses() -> None:
    hooks = WebhooksResponse.model_validate_json(FIXTURE.read_bytes()).webhooks
    assert [(h.destination, h.disabled) for h in hooks] == [
        ("https://amosync.example.test/webhook?token=abc", False),
        ("https://elsewhere.example.test/hook", True),
    ]
    assert hooks[0].settings[0] == "add_contact"
    # A public client library reads the destination from `name`: accepted too.
    assert Webhook.model_validate({"name": "https://x.test/h"}).destination == "https://x.test/h"


async def problem_codes(s: Stack) -> list[str]:
    body: dict[str, Any] = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()
    return [p["code"] for p in body["problems"]]


@pytest.mark.parametrize(
    ("breakage", "code"),
    [("disable", "amocrm_webhook_disabled"), ("remove", "amocrm_webhook_missing")],
)
async def test_a_lost_webhook_is_registered_again_and_shown_until_it_works(
    database_url: str, breakage: str, code: str
) -> None:
    async with stack(database_url) as s:
        amo = s.sandbox.amocrm
        await s.connect(("Ann", ["ann@example.com"]))
        [hook] = amo.webhooks(ACCOUNT_ID)
        assert hook["disabled"] is False

        if breakage == "disable":
            amo.disable_webhook(ACCOUNT_ID)
        else:
            amo.remove_webhook(ACCOUNT_ID)
        # A change while the webhook is off is never posted.
        bob = amo.add_contact(ACCOUNT_ID, name="Bob", emails=["bob@example.com"])
        await amo.flush_webhooks()
        assert not [d for d in amo.deliveries if d.contact_id == bob["id"]]

        await s.reconcile_now()
        [hook] = amo.webhooks(ACCOUNT_ID)
        assert hook["disabled"] is False
        assert hook["destination"].startswith(s.url)
        assert await problem_codes(s) == [code]
        # The contacts pass picked up what the webhook missed; new changes arrive again.
        assert s.members() == {"ann@example.com", "bob@example.com"}
        cy = amo.add_contact(ACCOUNT_ID, name="Cy", emails=["cy@example.com"])
        await amo.flush_webhooks()
        assert [d.status for d in amo.deliveries if d.contact_id == cy["id"]] == [200]

        # The next pass finds it in place and on: the problem is gone.
        await s.reconcile_now()
        assert await problem_codes(s) == []
        assert s.members() == {"ann@example.com", "bob@example.com", "cy@example.com"}


async def test_changes_whose_webhooks_never_arrived_are_applied_by_the_next_pass(
    database_url: str,
) -> None:
    # The webhook stays registered and on; amoCRM just never posts these changes.
    async with stack(database_url) as s:
        amo = s.sandbox.amocrm
        [ann] = await s.connect(("Ann", ["ann@example.com"]))
        assert s.members() == {"ann@example.com"}

        amo.webhooks_enabled = False
        amo.update_contact(ACCOUNT_ID, ann["id"], emails=["ann@new.example.com"])
        amo.add_contact(ACCOUNT_ID, name="Bob", emails=["bob@example.com"])
        await amo.flush_webhooks()
        await s.settle()
        assert s.members() == {"ann@example.com"}  # nothing arrived

        await s.reconcile_now()
        assert s.members() == {"ann@new.example.com", "bob@example.com"}
        assert await problem_codes(s) == []
