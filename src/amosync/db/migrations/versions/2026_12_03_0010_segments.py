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

import sqlalchemy as sa
from alembic import op

from amosync.db.ddl import account_id, create_index, create_table, drop_index, moment

revision: str = "0010"
down_revision: str | None = "0006"


def upgrade() -> None:
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tags", sa.JSON(), nullable=True))
    with op.batch_alter_table("pending_changes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("data", sa.JSON(), nullable=True))
    create_table(
        "segment_members",
        account_id(),
        sa.Column("list_id", sa.BigInteger(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("amocrm_id", sa.BigInteger(), nullable=False),
        key=["account_id", "list_id", "email", "amocrm_id"],
    )
    create_index("segment_members", "ix_segment_members_contact", ["account_id", "amocrm_id"])
    create_table(
        "lead_links",
        account_id(),
        sa.Column("lead_id", sa.BigInteger(), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("pipeline_id", sa.BigInteger(), nullable=False),
        sa.Column("status_id", sa.BigInteger(), nullable=False),
        key=["account_id", "lead_id", "contact_id"],
    )
    create_index("lead_links", "ix_lead_links_contact", ["account_id", "contact_id"])
    create_table(
        "pending_leads",
        account_id(),
        sa.Column("lead_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        moment("received_at"),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        key=["account_id", "lead_id"],
    )


def downgrade() -> None:
    op.drop_table("pending_leads")
    drop_index("lead_links", "ix_lead_links_contact")
    op.drop_table("lead_links")
    drop_index("segment_members", "ix_segment_members_contact")
    op.drop_table("segment_members")
    with op.batch_alter_table("pending_changes", schema=None) as batch_op:
        batch_op.drop_column("data")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_column("tags")
