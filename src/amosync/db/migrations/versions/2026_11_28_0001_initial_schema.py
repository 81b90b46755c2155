"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 05:05:13.876656
"""

import sqlalchemy as sa
from alembic import op

from amosync.db.ddl import account_id, create_index, create_table, drop_index, moment

revision: str = "0001"
down_revision: str | None = None


# The partial unique indexes: one pending job per dedupe key, one active run per account.
PENDING = "status = 'pending'"
ACTIVE = "status IN ('queued', 'running')"


def upgrade() -> None:
    create_table(
        "accounts",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("subdomain", sa.String(length=255), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("unisender_key_enc", sa.Text(), nullable=True),
        sa.Column("unisender_valid", sa.Boolean(), nullable=False),
        moment("unisender_checked_at", nullable=True),
        sa.Column("list_id", sa.BigInteger(), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("webhook_token_hash", sa.String(length=64), nullable=True),
        sa.Column("webhook_token_enc", sa.Text(), nullable=True),
        moment("reconciled_at", nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        moment("lease_until", nullable=True),
        moment("created_at"),
        moment("updated_at"),
        key=["id"],
        unique=["webhook_token_hash"],
    )
    create_table(
        "contacts",
        account_id(),
        sa.Column("amocrm_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=512), nullable=True),
        sa.Column("emails", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        moment("synced_at", nullable=True),
        sa.Column("amocrm_updated_at", sa.BigInteger(), nullable=True),
        sa.Column("seen_run_id", sa.Integer(), nullable=True),
        moment("updated_at"),
        key=["account_id", "amocrm_id"],
    )
    create_index("contacts", "ix_contacts_account_state", ["account_id", "state", "amocrm_id"])

    create_table(
        "integrations",
        sa.Column("id", sa.Integer(), nullable=False),
        account_id(),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("client_secret_enc", sa.Text(), nullable=True),
        sa.Column("redirect_uri", sa.String(length=1024), nullable=True),
        sa.Column("base_url", sa.String(length=1024), nullable=True),
        sa.Column("access_token_enc", sa.Text(), nullable=True),
        sa.Column("refresh_token_enc", sa.Text(), nullable=True),
        moment("expires_at", nullable=True),
        sa.Column("token_version", sa.Integer(), nullable=False),
        sa.Column("refresh_lock_owner", sa.String(length=64), nullable=True),
        moment("refresh_lock_until", nullable=True),
        sa.Column("webhook_registered", sa.Boolean(), nullable=False),
        moment("created_at"),
        moment("updated_at"),
        key=["id"],
        unique=["account_id", "client_id"],
    )
    create_index("integrations", "ix_integrations_account_id", ["account_id"])

    create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        account_id(nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("dedupe_key", sa.String(length=128), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        moment("run_after"),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        moment("lease_until", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        moment("created_at"),
        moment("updated_at"),
        key=["id"],
    )
    create_index("jobs", "ix_jobs_account_id", ["account_id"])
    create_index("jobs", "ix_jobs_due", ["status", "run_after"])
    create_index("jobs", "uq_jobs_pending_key", ["dedupe_key"], unique=True, where=PENDING)

    create_table(
        "listed_emails",
        account_id(),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("amocrm_id", sa.BigInteger(), autoincrement=False, nullable=False),
        key=["account_id", "email", "amocrm_id"],
    )
    create_index("listed_emails", "ix_listed_emails_contact", ["account_id", "amocrm_id"])

    create_table(
        "pending_changes",
        account_id(),
        sa.Column("amocrm_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=True),
        sa.Column("emails", sa.JSON(), nullable=False),
        sa.Column("amocrm_updated_at", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        moment("received_at"),
        key=["account_id", "amocrm_id"],
    )
    create_table(
        "sync_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        account_id(),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("fetched", sa.Integer(), nullable=False),
        sa.Column("synced", sa.Integer(), nullable=False),
        sa.Column("unsynced", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("expected", sa.Integer(), nullable=True),
        sa.Column("next_page", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        moment("created_at"),
        moment("started_at", nullable=True),
        moment("finished_at", nullable=True),
        moment("updated_at"),
        key=["id"],
    )
    create_index("sync_runs", "ix_sync_runs_account_id", ["account_id"])
    create_index(
        "sync_runs", "uq_sync_runs_active_account", ["account_id"], unique=True, where=ACTIVE
    )

    create_table(
        "webhook_events",
        sa.Column("id", sa.Integer(), nullable=False),
        account_id(),
        moment("received_at"),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.Column("contact_ids", sa.JSON(), nullable=False),
        key=["id"],
    )
    create_index("webhook_events", "ix_webhook_events_account_time", ["account_id", "received_at"])


def downgrade() -> None:
    drop_index("webhook_events", "ix_webhook_events_account_time")
    op.drop_table("webhook_events")
    drop_index("sync_runs", "uq_sync_runs_active_account")
    drop_index("sync_runs", "ix_sync_runs_account_id")
    op.drop_table("sync_runs")
    op.drop_table("pending_changes")
    drop_index("listed_emails", "ix_listed_emails_contact")
    op.drop_table("listed_emails")
    drop_index("jobs", "uq_jobs_pending_key")
    drop_index("jobs", "ix_jobs_due")
    drop_index("jobs", "ix_jobs_account_id")
    op.drop_table("jobs")
    drop_index("integrations", "ix_integrations_account_id")
    op.drop_table("integrations")
    drop_index("contacts", "ix_contacts_account_state")
    op.drop_table("contacts")
    op.drop_table("accounts")
