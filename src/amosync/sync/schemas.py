"""Shapes of the sync routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from amosync.ids import BIGINT_MAX


class SyncRequest(BaseModel):
    account_id: int = Field(gt=0, le=BIGINT_MAX)


class SyncStarted(BaseModel):
    run_id: int
    status: str


class ContactOut(BaseModel):
    amocrm_id: int
    name: str | None
    emails: list[str]


class SyncedContact(ContactOut):
    synced_at: datetime | None


class UnsyncedContact(ContactOut):
    reason: str | None
    detail: str | None
