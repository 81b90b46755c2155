"""What the dashboard shows, shaped for the templates and the progress endpoint.

Built from the domain repositories; nothing here reads a secret column, so nothing secret
can reach a page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from amosync.accounts import repository
from amosync.accounts.service import is_connected
from amosync.db.models import Account, SyncRun, utcnow

ACTIVE = ("queued", "running")

REASONS = {
    "no_email": "No e-mail address",
    "invalid_email": "Invalid e-mail address",
}


def reason_text(reason: str | None) -> str:
    """A person's wording of an unsynced reason code."""
    if not reason:
        return "Unknown"
    if reason.startswith("unisender:"):
        return f"Rejected by Unisender ({reason.removeprefix('unisender:')})"
    return REASONS.get(reason, reason.replace("_", " ").capitalize())


@dataclass(frozen=True)
class Progress:
    """A full sync run as the progress bar shows it."""

    run_id: int
    status: str
    fetched: int
    synced: int
    unsynced: int
    failed: int
    expected: int | None
    # None while the total is unknown (first sync: amoCRM gives no count): an
    # indeterminate bar.
    percent: int | None
    rate: float | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def processed(self) -> int:
        return self.synced + self.unsynced + self.failed

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "active": self.active,
            "fetched": self.fetched,
            "synced": self.synced,
            "unsynced": self.unsynced,
            "failed": self.failed,
            "expected": self.expected,
            "percent": self.percent,
            "rate": self.rate,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "error": self.error,
        }


def progress(run: SyncRun, *, now: datetime | None = None) -> Progress:
    processed = run.synced + run.unsynced + run.failed
    percent: int | None
    if run.status == "done":
        percent = 100
    elif run.status == "queued":
        percent = 0
    elif run.expected:
        # The estimate can be short (contacts added since): stay below 100 until done.
        percent = min(99, processed * 100 // run.expected)
    else:
        percent = None
    rate = None
    if run.started_at is not None:
        elapsed = ((run.finished_at or now or utcnow()) - run.started_at).total_seconds()
        if elapsed > 0:
            rate = round(processed / elapsed, 1)
    return Progress(
        run_id=run.id,
        status=run.status,
        fetched=run.fetched,
        synced=run.synced,
        unsynced=run.unsynced,
        failed=run.failed,
        expected=run.expected,
        percent=percent,
        rate=rate,
        started_at=run.started_at,
        finished_at=run.finished_at,
        error=run.error,
    )


@dataclass(frozen=True)
class Counts:
    synced: int = 0
    unsynced: int = 0
    pending: int = 0

    def as_json(self) -> dict[str, int]:
        return {"synced": self.synced, "unsynced": self.unsynced, "pending": self.pending}


@dataclass(frozen=True)
class AccountRow:
    id: int
    name: str | None
    subdomain: str | None
    status: str
    unisender_connected: bool
    list_id: int | None
    counts: Counts
    run: Progress | None

    @property
    def title(self) -> str:
        return self.name or self.subdomain or f"Account {self.id}"


async def account_rows(session: AsyncSession, accounts: Sequence[Account]) -> list[AccountRow]:
    ids = [account.id for account in accounts]
    counts = await repository.contact_counts(session, ids)
    runs = await repository.last_runs(session, ids)
    now = utcnow()
    rows = []
    for account in accounts:
        by_state = counts.get(account.id, {})
        run = runs.get(account.id)
        rows.append(
            AccountRow(
                id=account.id,
                name=account.name,
                subdomain=account.subdomain,
                status=account.status,
                unisender_connected=is_connected(account),
                list_id=account.list_id,
                counts=Counts(
                    synced=by_state.get("synced", 0),
                    unsynced=by_state.get("unsynced", 0),
                    pending=by_state.get("pending", 0),
                ),
                run=progress(run, now=now) if run else None,
            )
        )
    return rows
