"""`Sandbox`: one amoCRM simulator and one Unisender simulator sharing a call log."""

from __future__ import annotations

from amosync.sandbox.amocrm import AmoCRMSimulator
from amosync.sandbox.calls import CallLog
from amosync.sandbox.unisender import UnisenderSimulator

DEMO_ACCOUNT_ID = 30896271
DEMO_SUBDOMAIN = "acme"
DEMO_UNISENDER_KEY = "sandbox-demo-unisender-key"


class Sandbox:
    """Both simulators; serve them with `amosync.sandbox.serve(sandbox)`.

    `calls` is the shared call log (a list of `Call`, newest last) with `count_where(...)`,
    `matching(...)` and `by_path()` helpers.
    """

    def __init__(self) -> None:
        self.calls = CallLog()
        self.amocrm = AmoCRMSimulator(self.calls)
        self.unisender = UnisenderSimulator(self.calls)

    def seed_demo(self, *, contacts: int = 40) -> None:
        """A small data set to click through: account `acme` and a Unisender key.

        The account gets a few hand-made contacts (one without fields, one phone-only, one
        with a malformed address, two sharing an address) plus `contacts` generated ones.
        """
        amo = self.amocrm
        amo.add_account(account_id=DEMO_ACCOUNT_ID, subdomain=DEMO_SUBDOMAIN, name="Acme")
        amo.add_contact(DEMO_ACCOUNT_ID, "Анна Иванова", emails=["anna@example.com"])
        amo.add_contact(
            DEMO_ACCOUNT_ID, "Boris Petrov", emails=["boris@example.com", "b@work.example"]
        )
        amo.add_contact(DEMO_ACCOUNT_ID, "No Fields", custom_fields_values=None)
        amo.add_contact(DEMO_ACCOUNT_ID, "Phone Only", phones=["+7 999 000-00-00"])
        amo.add_contact(DEMO_ACCOUNT_ID, "Typo", emails=["typo@example"])
        amo.add_contact(DEMO_ACCOUNT_ID, "Shared One", emails=["office@example.com"])
        amo.add_contact(DEMO_ACCOUNT_ID, "Shared Two", emails=["office@example.com"])
        amo.generate_contacts(DEMO_ACCOUNT_ID, contacts, seed=1)
        self.unisender.add_key(DEMO_UNISENDER_KEY)

    async def aclose(self) -> None:
        """Stop webhook (and Unisender hook) deliveries and close their HTTP clients."""
        await self.amocrm.aclose()
        await self.unisender.hooks.aclose()
