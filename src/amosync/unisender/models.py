"""What amosync sends to and reads from the Unisender API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One `importContacts` row: an address and its contact's name.

    A plain slotted dataclass, not a pydantic model: a full sync builds one per address.
    """

    email: str
    name: str = ""


class MailList(_Model):
    """An entry of `getLists`."""

    id: int
    title: str


class LogEntry(_Model):
    """A row Unisender rejected or warned about; `index` is the row's position in the call."""

    index: int
    code: str
    message: str = ""


class ImportResult(_Model):
    """The `result` of `importContacts`."""

    total: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    new_emails: int = 0
    invalid: int = 0
    log: list[LogEntry] = Field(default_factory=list)


class ListMembership(_Model):
    id: int
    status: str | None = None  # e.g. active, unsubscribed
    added_at: str | None = None


class UnisenderContact(_Model):
    """`getContact` (with lists and fields), flattened."""

    email: str
    status: str | None = None  # new, active, unsubscribed, blocked, ...
    availability: str | None = None
    added_at: str | None = None
    lists: list[ListMembership] = Field(default_factory=list)
    fields: dict[str, Any] = Field(default_factory=dict)

    def in_list(self, list_id: int) -> bool:
        return any(membership.id == list_id for membership in self.lists)
