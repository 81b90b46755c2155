"""applied_hours: contacts applied per account and hour, for the dashboard's chart

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-02 19:20:00

Nothing stored said what the service did hour by hour: a contact keeps only its latest
`synced_at`, webhook events are pruned, and a sync run only totals itself. One small row
per account and hour, incremented where changes are applied.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "applied_hours",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("synced", sa.Integer(), nullable=False),
        sa.Column("unsynced", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_applied_hours_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "hour", name=op.f("pk_applied_hours")),
    )


def downgrade() -> None:
    op.drop_table("applied_hours")
