"""What amosync sends to and reads from the Unisender API."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One `importContacts` row: an address, its contact's name and, when the account's
    settings ask for them, the lists and the other columns it goes with.

    A plain slotted dataclass, not a pydantic model: a full sync builds one per address.
    `list_ids` is the row's `email_list_ids` ("321,654"; None: the call's list); `fields`
    maps Unisender columns (`phone`, `tags`, user fields by name) to their text.
    """

    email: str
    name: str = ""
    list_ids: str | None = None
    fields: Mapping[str, str] | None = None


class UnisenderField(_Model):
    """An entry of `getFields`: a user field (`Name` is one every account starts with).

    The answer also carries `is_visible` and `view_pos`, which amosync does not read.
    """

    id: int
    name: str
    type: str = "string"  # string, text, number, date, bool


class MailList(_Model):
    """An entry of `getLists`."""

    id: int
    title: str


class LogEntry(_Model):
    """A row Unisender rejected or warned about; `index` is the row's position in the call."""

    index: int
    code: str = ""
    message: str = ""

    @field_validator("message")
    @classmethod
    def _unescaped(cls, message: str) -> str:
        # Unisender HTML-encodes its error messages; the log's may be too.
        return html.unescape(message)


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
        counters decide where they can. An entry whose message is one of the answer's
        `warnings` is a warning. `invalid` = 0 means every row was imported (all entries
        are warnings); `invalid` at least the number of other rows logged means each of
        them was refused, whatever its code. In between, or without `invalid`, only the
        codes known to refuse a row (`REFUSED_CODES`) do.
        """
        if not self.log:
            return []
        candidates = self.log
        if self.warnings:
            warned = set(self.warnings)
            candidates = [entry for entry in self.log if entry.message not in warned]
        if self.invalid is not None:
            if self.invalid <= 0:
                return []
            if self.invalid >= len({entry.index for entry in candidates}):
                return list(candidates)
        return [entry for entry in candidates if entry.code in REFUSED_CODES]


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


class UnisenderHook(_Model):
    """An entry of `listHooks`. Its shape is not documented: only `hook_url` (the handler's
    identifier, per the `setHook` documentation) and `status` are read, and any status
    other than `active` counts as stopped."""

    hook_url: str
    status: str = "active"

    @property
    def active(self) -> bool:
        return self.status.strip().lower() == "active"
