"""Shapes of the settings routes: what PUT answers and what the forms pick from."""

from __future__ import annotations

from pydantic import BaseModel

from amosync.accounts.schemas import SyncStarted
from amosync.accounts.settings import AccountSettings


class SavedSettings(AccountSettings):
    """The settings as stored, and the full sync their change started (null: nothing that
    decides what goes to Unisender changed, or the account cannot sync yet)."""

    sync: SyncStarted | None = None


class ListChoice(BaseModel):
    id: int
    title: str


class FieldChoice(BaseModel):
    id: int
    name: str
    type: str


class StatusChoice(BaseModel):
    id: int
    name: str


class PipelineChoice(BaseModel):
    id: int
    name: str
    statuses: list[StatusChoice]


class TagChoice(BaseModel):
    id: int
    name: str


class Choices(BaseModel):
    """What the settings forms offer, by name. A part is null when its vendor failed, with
    the error code in `errors` under the part's name, so the form still shows the rest."""

    lists: list[ListChoice] | None = None
    fields: list[FieldChoice] | None = None
    pipelines: list[PipelineChoice] | None = None
    tags: list[TagChoice] | None = None
    errors: dict[str, str] = {}
