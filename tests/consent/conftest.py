"""What the consent tests share: an account whose contacts hold one address (ANN) with the
key connected and Unisender's hook registered, deliveries of the hook, the notes amoCRM
holds."""

from __future__ import annotations

from tests.stack import ACCOUNT_ID, UNISENDER_KEY, Stack

ANN = "ann@example.com"


async def setup(s: Stack) -> dict[str, int]:
    """An installed account with two contacts holding ANN (one with a tag of its own) and
    one that does not, the key connected and synced."""
    amo = s.sandbox.amocrm
    await s.install()
    ids = {
        "ann": amo.add_contact(ACCOUNT_ID, "Ann", emails=[ANN])["id"],
        "ann_work": amo.add_contact(
            ACCOUNT_ID, "Ann at work", emails=["Ann@Example.com", "a@work.example"]
        )["id"],
        "bob": amo.add_contact(ACCOUNT_ID, "Bob", emails=["bob@example.com"])["id"],
    }
    amo.edit_tags(ACCOUNT_ID, ids["ann"], add=[{"name": "vip"}])
    await amo.flush_webhooks()
    await s.connect_unisender()
    await s.settle()
    hooks = s.sandbox.unisender.hooks.list_hooks(UNISENDER_KEY)
    assert [h["status"] for h in hooks] == ["active"]
    assert hooks[0]["hook_url"].startswith(f"{s.url}/unisender/webhook?token=")
    assert hooks[0]["events"] == {"unsubscribe": "*"}
    assert ANN in s.members()
    return ids


async def deliver(s: Stack) -> None:
    await s.sandbox.unisender.hooks.flush()
    await s.settle()


def notes(s: Stack, contact_id: int) -> list[str]:
    return [n["params"]["text"] for n in s.sandbox.amocrm.notes(ACCOUNT_ID, contact_id)]
