"""Request and response shapes of the accounts API. Secrets go in, never out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from amosync.accounts.problems import Problem
from amosync.http.ids import BIGINT_MAX


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountCreate(Strict):
    subdomain: str | None = Field(default=None, max_length=255)
    name: str | None = Field(default=None, max_length=255)
    unisender_key: str | None = Field(default=None, min_length=1, max_length=255)
    list_id: int | None = Field(default=None, gt=0, le=BIGINT_MAX)
    settings: dict[str, Any] | None = None


class AccountUpdate(AccountCreate):
    pass


class ContactCounts(BaseModel):
    synced: int = 0
    unsynced: int = 0
    pending: int = 0
    total: int = 0


class SyncStarted(BaseModel):
    """The full sync a request started or joined (`amosync.accounts.runs`)."""

    run_id: int
    status: str


class SyncRunOut(BaseModel):
    run_id: int
    account_id: int
    status: str
    fetched: int
    synced: int
    unsynced: int
    failed: int
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


class AccountOut(BaseModel):
    id: int
    subdomain: str | None
    name: str | None
    status: str
    unisender_connected: bool
    list_id: int | None
    settings: dict[str, Any]
    contacts: ContactCounts
    last_sync: SyncRunOut | None
    # Conditions a person must act on; empty when all is well (SPEC §3).
    problems: list[Problem]
    created_at: datetime


class IntegrationOut(BaseModel):
    client_id: str
    redirect_uri: str | None
    base_url: str | None
    has_tokens: bool
    token_expires_at: datetime | None
    webhook_registered: bool
    created_at: datetime
    updated_at: datetime


class IntegrationUpdate(Strict):
    client_id: str | None = Field(default=None, min_length=1, max_length=64)
    client_secret: str | None = Field(default=None, min_length=1, max_length=255)
    redirect_uri: str | None = Field(default=None, min_length=1, max_length=1024)
    code: str | None = Field(default=None, min_length=1, max_length=2048)


class ConnectionOut(BaseModel):
    account_id: int
    connected: bool
