"""Tables. Secrets (tokens, client secret, Unisender key, webhook token) are stored encrypted
(`*_enc` columns, Fernet text, see `amosync.runtime.crypto`)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:  # noqa: ARG002
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class AccountStatus(StrEnum):
    """`accounts.status`: whether the account's work runs."""

    ACTIVE = "active"
    REAUTH_REQUIRED = "reauth_required"  # amoCRM refused its tokens: install the widget again
    DISCONNECTED = "disconnected"  # kept for its history; nothing goes upstream any more


class RunStatus(StrEnum):
    """`sync_runs.status`: a full sync's progress."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class JobStatus(StrEnum):
    """`jobs.status`: where a job is in the queue."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    DROPPED = "dropped"  # its account was disconnected before it ran


class ConsentStatus(StrEnum):
    """`consent_events.status`: what became of one unsubscribe Unisender reported."""

    PENDING = "pending"
    DONE = "done"
    NO_CONTACT = "no_contact"  # no contact of the account holds the address
    DISABLED = "disabled"  # consent.enabled was false: nothing written


ACTIVE_RUN = f"status IN ('{RunStatus.QUEUED}', '{RunStatus.RUNNING}')"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[str]: JSON}


class Account(Base):
    """An amoCRM account (company). The id is amoCRM's account id."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    subdomain: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32), default=AccountStatus.ACTIVE)
    unisender_key_enc: Mapped[str | None] = mapped_column(Text)
    # Whether the stored key was accepted by Unisender the last time it was used.
    unisender_valid: Mapped[bool] = mapped_column(Boolean, default=False)
    unisender_checked_at: Mapped[datetime | None]
    list_id: Mapped[int | None] = mapped_column(BigInteger)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The per-account secret in the webhook URL: a hash for lookup, the value encrypted
    # because it must be sent again to unregister the webhook.
    webhook_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    webhook_token_enc: Mapped[str | None] = mapped_column(Text)
    # The same for the URL of the account's Unisender hook (`POST /unisender/webhook`): its
    # own secret, so that neither URL can be used for the other.
    unisender_hook_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    unisender_hook_token_enc: Mapped[str | None] = mapped_column(Text)
    reconciled_at: Mapped[datetime | None]
    # Worker lease: one account is handled by one worker at a time.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Integration(Base):
    """An amoCRM integration installed in an account: OAuth credentials and tokens."""

    __tablename__ = "integrations"
    __table_args__ = (UniqueConstraint("account_id", "client_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    client_id: Mapped[str] = mapped_column(String(64))
    client_secret_enc: Mapped[str | None] = mapped_column(Text)
    redirect_uri: Mapped[str | None] = mapped_column(String(1024))
    # Where this account's amoCRM API lives, e.g. https://acme.amocrm.ru
    base_url: Mapped[str | None] = mapped_column(String(1024))
    access_token_enc: Mapped[str | None] = mapped_column(Text)
    refresh_token_enc: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None]
    # Bumped on every stored token pair: the compare-and-swap that keeps refreshes single-use.
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    refresh_lock_owner: Mapped[str | None] = mapped_column(String(64))
    refresh_lock_until: Mapped[datetime | None]
    webhook_registered: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Contact(Base):
    """One amoCRM contact and its sync state: synced, unsynced (with reason) or pending."""

    __tablename__ = "contacts"
    __table_args__ = (Index("ix_contacts_account_state", "account_id", "state", "amocrm_id"),)

    account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    amocrm_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str | None] = mapped_column(String(512))
    emails: Mapped[list[str]] = mapped_column(default=list)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    synced_at: Mapped[datetime | None]
    amocrm_updated_at: Mapped[int | None] = mapped_column(BigInteger)
    # The full sync that last saw this contact; contacts a finished run did not see are gone.
    seen_run_id: Mapped[int | None] = mapped_column(Integer)
    # Its tag names as amoCRM last showed them (None: not recorded), so a lead's change
    # can re-evaluate the contact's tag rules without reading it from amoCRM.
    tags: Mapped[list[str] | None] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ListedEmail(Base):
    """An address amosync put in the account's list, and the contact it came from.

    An address shared by two contacts has two rows; it is excluded from the list only
    when no contact of the account has it any more.
    """

    __tablename__ = "listed_emails"
    # Covering, so that SQLite picks it for "these contacts' addresses" with or without
    # table statistics: on (account_id, amocrm_id) alone it preferred scanning the primary
    # key's every row of the account, which made each batch of a large sync slower.
    __table_args__ = (Index("ix_listed_emails_contact", "account_id", "amocrm_id", "email"),)

    account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    amocrm_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


class SegmentMember(Base):
    """An address amosync put in one of the account's segment lists (SPEC §8), and the
    contact whose match put it there; as with `ListedEmail`, an address two contacts
    share leaves the list only when neither matches."""

    __tablename__ = "segment_members"
    __table_args__ = (Index("ix_segment_members_contact", "account_id", "amocrm_id"),)

    account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    list_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    amocrm_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


class LeadLink(Base):
    """A lead in one of the statuses a rule wants, and a contact it is linked to: what
    `lead_statuses` rules read. Leads in other statuses are not kept."""

    __tablename__ = "lead_links"
    __table_args__ = (Index("ix_lead_links_contact", "account_id", "contact_id"),)

    account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    lead_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    contact_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    pipeline_id: Mapped[int] = mapped_column(BigInteger)
    status_id: Mapped[int] = mapped_column(BigInteger)


class PendingLead(Base):
    """A lead a webhook said changed, not yet read back: coalesced per lead (amoCRM's
    form says little of the lead's contacts, so the job reads the lead itself)."""

    __tablename__ = "pending_leads"

    account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    lead_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class SyncRun(Base):
    """A full sync of one account, with its progress and checkpoint."""

    __tablename__ = "sync_runs"
    __table_args__ = (
        Index(
            "uq_sync_runs_active_account",
            "account_id",
            unique=True,
            sqlite_where=text(ACTIVE_RUN),
            postgresql_where=text(ACTIVE_RUN),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.QUEUED)
    fetched: Mapped[int] = mapped_column(Integer, default=0)
    synced: Mapped[int] = mapped_column(Integer, default=0)
    unsynced: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    # How many contacts the account had when the run started (amoCRM gives no total): the
    # progress bar's estimate.
    expected: Mapped[int | None] = mapped_column(Integer)
    # Checkpoint: the next amoCRM page to fetch.
    next_page: Mapped[int] = mapped_column(Integer, default=1)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Job(Base):
    """Pending work for the worker: install, full sync, webhook changes, reconciliation…"""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_due", "status", "run_after"),
        # One pending job per key (e.g. "changes:<account>"): new webhooks join it.
        Index(
            "uq_jobs_pending_key",
            "dedupe_key",
            unique=True,
            sqlite_where=text(f"status = '{JobStatus.PENDING}'"),
            postgresql_where=text(f"status = '{JobStatus.PENDING}'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.PENDING)
    dedupe_key: Mapped[str | None] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PendingChange(Base):
    """The latest state of a contact from webhooks, not yet applied to Unisender."""

    __tablename__ = "pending_changes"

    account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    amocrm_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # upsert | delete
    action: Mapped[str] = mapped_column(String(8))
    name: Mapped[str | None] = mapped_column(String(512))
    emails: Mapped[list[str]] = mapped_column(default=list)
    amocrm_updated_at: Mapped[int | None] = mapped_column(BigInteger)
    # Bumped on every new state, so the worker deletes only the state it applied.
    version: Mapped[int] = mapped_column(Integer, default=1)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Failed applications of this state (reset by a new one): a change that keeps failing
    # is tried alone, then set aside, so it cannot hold back the account's other changes.
    # (A server default only: the webhook inbox's prepared insert leaves the column out.)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # What else the webhook said that the account's rules and fields read: `tags` (names)
    # and `fields` (custom fields other than e-mail, in the API's `custom_fields_values`
    # shape). None when it said nothing of them.
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class AccountProblem(Base):
    """A condition of an account a person must act on (`amosync.accounts.problems`)."""

    __tablename__ = "account_problems"

    account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    detail: Mapped[str] = mapped_column(Text)
    # When the condition was first seen; kept while it lasts, whatever the detail becomes.
    since: Mapped[datetime] = mapped_column(default=utcnow)
    # A condition known to end by itself (an amoCRM block) is not shown after this.
    until: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DashboardSession(Base):
    """A logged-in dashboard session (`amosync.web.security`): logging out deletes it, so
    its cookie opens nothing afterwards, in any process."""

    __tablename__ = "dashboard_sessions"

    # sha256 of the session cookie: the database never holds a usable cookie.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class WebhookEvent(Base):
    """A received webhook request, kept briefly for the dashboard."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_account_time", "account_id", "received_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("accounts.id", ondelete="CASCADE")
    )
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    added: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    contact_ids: Mapped[list[str]] = mapped_column(default=list)


class AppliedHour(Base):
    """How many contacts' changes one account had applied in one clock hour (UTC), for the
    dashboard's chart: contacts put in the list, left unsynced, and deleted.

    Counted where changes are applied (`sync.apply.Applier`), full syncs and webhook
    changes alike; nothing else keeps a per-hour record (contacts keep only their latest
    `synced_at`, webhook events are pruned, sync runs only total a run).
    """

    __tablename__ = "applied_hours"

    account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    synced: Mapped[int] = mapped_column(Integer, default=0)
    unsynced: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[int] = mapped_column(Integer, default=0)


class ConsentEvent(Base):
    """An unsubscribe Unisender notified us of, and what was written back to amoCRM.

    Stored before the hook's 200; `dedupe_key` (the address, list and event time) makes a
    redelivered event the same row, so it is written back once.
    """

    __tablename__ = "consent_events"
    __table_args__ = (
        UniqueConstraint("account_id", "dedupe_key"),
        Index("ix_consent_events_account_status", "account_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("accounts.id", ondelete="CASCADE")
    )
    dedupe_key: Mapped[str] = mapped_column(String(64))
    email: Mapped[str] = mapped_column(String(320))
    list_id: Mapped[int | None] = mapped_column(BigInteger)
    # As Unisender gave it ("2026-12-02 19:40:00", a Unix time…); None when it gave none.
    event_time: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default=ConsentStatus.PENDING)
    contact_ids: Mapped[list[str]] = mapped_column(default=list)
    processed_at: Mapped[datetime | None]


class ConsentWrite(Base):
    """What was written to one amoCRM contact for one event: a retried job skips it."""

    __tablename__ = "consent_writes"

    event_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("consent_events.id", ondelete="CASCADE"), primary_key=True
    )
    amocrm_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    tagged: Mapped[bool] = mapped_column(Boolean, default=False)
    noted: Mapped[bool] = mapped_column(Boolean, default=False)


class ServiceSecret(Base):
    """Secrets of the service itself, kept where every process finds them: the generated
    admin token when the database is not a SQLite file (beside which it has a file)."""

    __tablename__ = "service_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value_enc: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
