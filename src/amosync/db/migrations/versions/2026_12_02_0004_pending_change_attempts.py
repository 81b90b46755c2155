"""pending_changes: how many times a change failed to apply

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 19:10:00

A change whose batch keeps failing is tried alone after a few failures and set aside after
a few more (the contact shows as unsynced with the error), so one contact cannot hold back
the account's other changes. The count starts again with every new state of the contact.
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"


def upgrade() -> None:
    with op.batch_alter_table("pending_changes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("pending_changes", schema=None) as batch_op:
        batch_op.drop_column("attempts")
