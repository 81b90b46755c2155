"""consent write-back: the Unisender hook's token, unsubscribes received, writes made

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 20:00:00

An unsubscribe in Unisender tags and notes the amoCRM contacts holding the address (SPEC
§9). The hook URL carries a per-account secret of its own (hashed for lookup, encrypted
because it is sent again to remove the hook). Each event is stored once per account
(`dedupe_key`), and each contact's tag and note once per event, so redeliveries and
retried jobs write nothing twice.
"""

import sqlalchemy as sa
from alembic import op

from amosync.db.ddl import account_id, create_index, create_table, drop_index, moment

revision: str = "0009"
down_revision: str | None = "0008"


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unisender_hook_token_hash", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("unisender_hook_token_enc", sa.Text(), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_accounts_unisender_hook_token_hash"), ["unisender_hook_token_hash"]
        )
    create_table(
        "consent_events",
        sa.Column("id", sa.Integer(), nullable=False),
        account_id(),
        sa.Column("dedupe_key", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("list_id", sa.BigInteger(), nullable=True),
        sa.Column("event_time", sa.String(length=64), nullable=True),
        moment("received_at"),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("contact_ids", sa.JSON(), nullable=False),
        moment("processed_at", nullable=True),
        key=["id"],
        unique=["account_id", "dedupe_key"],
    )
    create_index(
        "consent_events", "ix_consent_events_account_status", ["account_id", "status", "id"]
    )
    create_table(
        "consent_writes",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("amocrm_id", sa.BigInteger(), nullable=False),
        sa.Column("tagged", sa.Boolean(), nullable=False),
        sa.Column("noted", sa.Boolean(), nullable=False),
        key=["event_id", "amocrm_id"],
        references={"event_id": "consent_events"},
    )


def downgrade() -> None:
    op.drop_table("consent_writes")
    drop_index("consent_events", "ix_consent_events_account_status")
    op.drop_table("consent_events")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_accounts_unisender_hook_token_hash"), type_="unique"
        )
        batch_op.drop_column("unisender_hook_token_enc")
        batch_op.drop_column("unisender_hook_token_hash")
