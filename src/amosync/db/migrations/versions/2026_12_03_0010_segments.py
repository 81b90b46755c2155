"""segments: contacts' tags, what a webhook said beyond addresses, segment lists' members,
leads linked to contacts, and lead changes waiting

Revision ID: 0010
Revises: 0006
Create Date: 2026-12-03 06:20:00

Segment lists (SPEC §8) are chosen by a contact's tags and by the statuses of the leads
linked to it. Which addresses amosync put in which segment list, and which leads in wanted
statuses link to which contacts, are kept here, so that a tag removed or a lead moved is
turned into an exclusion without reading the account from amoCRM again. The webhook's tags
and custom field values travel with the pending change (`pending_changes.data`) to the job
that applies it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tags", sa.JSON(), nullable=True))
    with op.batch_alter_table("pending_changes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("data", sa.JSON(), nullable=True))
    op.create_table(
        "segment_members",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("list_id", sa.BigInteger(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("amocrm_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_segment_members_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "account_id", "list_id", "email", "amocrm_id", name=op.f("pk_segment_members")
        ),
    )
    op.create_index(
        "ix_segment_members_contact",
        "segment_members",
        ["account_id", "amocrm_id"],
        unique=False,
    )
    op.create_table(
        "lead_links",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("lead_id", sa.BigInteger(), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("pipeline_id", sa.BigInteger(), nullable=False),
        sa.Column("status_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_lead_links_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "lead_id", "contact_id", name=op.f("pk_lead_links")),
    )
    op.create_index(
        "ix_lead_links_contact", "lead_links", ["account_id", "contact_id"], unique=False
    )
    op.create_table(
        "pending_leads",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("lead_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_pending_leads_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "lead_id", name=op.f("pk_pending_leads")),
    )


def downgrade() -> None:
    op.drop_table("pending_leads")
    op.drop_index("ix_lead_links_contact", table_name="lead_links")
    op.drop_table("lead_links")
    op.drop_index("ix_segment_members_contact", table_name="segment_members")
    op.drop_table("segment_members")
    with op.batch_alter_table("pending_changes", schema=None) as batch_op:
        batch_op.drop_column("data")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_column("tags")
