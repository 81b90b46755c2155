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
    code: str = ""
    message: str = ""


# `log` codes known to mean "this row was not imported" whatever the counters say:
# `invalid_arg` is the API's standard error code for an invalid argument value, here the
# row's. Every other code may be a warning (the log is "errors and warnings of the
# import"), so on its own it never takes an address out of the list; see `refused`.
REFUSED_CODES = frozenset({"invalid_arg"})


class ImportResult(_Model):
    """The `result` of `importContacts` (and the answer's top-level `warnings`)."""

    total: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    new_emails: int = 0
    # "How many of the addresses were not imported"; None when the answer does not say.
    invalid: int | None = None
    log: list[LogEntry] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def refused(self) -> list[LogEntry]:
        """The log entries whose row was not imported; the others are warnings.

        The log mixes errors and warnings and its codes are not listed anywhere, so the
        counters decide where they can: `invalid` = 0 means every row was imported (all
        entries are warnings); `invalid` at least the number of rows logged means every
        logged row was refused, whatever its code. In between, or without `invalid`, only
        the codes known to refuse a row (`REFUSED_CODES`) do.
        """
        if not self.log:
            return []
        if self.invalid is not None:
            if self.invalid <= 0:
                return []
            if self.invalid >= len({entry.index for entry in self.log}):
                return list(self.log)
        return [entry for entry in self.log if entry.code in REFUSED_CODES]


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
