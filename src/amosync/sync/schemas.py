"""Shapes of the sync routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel

from amosync.accounts.schemas import SyncStarted as SyncStarted
from amosync.db.models import Contact
from amosync.http.body import AccountFields


class SyncRequest(AccountFields):
    pass  # the account to sync (no docstring: it would be the schema's description)


class ContactOut(BaseModel):
    amocrm_id: int
    name: str | None
    emails: list[str]

    @classmethod
    def of(cls, row: Contact, **shown: Any) -> Self:
        """The stored contact as both views show it, with what this view adds (`shown`)."""
        return cls(amocrm_id=row.amocrm_id, name=row.name, emails=list(row.emails or []), **shown)


class SyncedContact(ContactOut):
    synced_at: datetime | None
    # Its addresses that unsubscribed in Unisender (SPEC §9): still in the list, never
    # subscribed again by a sync.
    unsubscribed: list[str] = []
    # The lists its addresses are in: the account's list, then its segment lists (SPEC §8).
    lists: list[int] = []


class UnsyncedContact(ContactOut):
    reason: str | None
    detail: str | None


class WebhookAccepted(BaseModel):
    """What `POST /webhook` answers: the contact changes it stored, by kind."""

    accepted: int
    added: int = 0
    updated: int = 0
    deleted: int = 0
    ignored: bool = False
