"""applied_hours: contacts applied per account and hour, for the dashboard's chart

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-02 19:20:00

Nothing stored said what the service did hour by hour: a contact keeps only its latest
`synced_at`, webhook events are pruned, and a sync run only totals itself. One small row
per account and hour, incremented where changes are applied.
"""

import sqlalchemy as sa
from alembic import op

from amosync.db.ddl import account_id, create_table, moment

revision: str = "0008"
down_revision: str | None = "0005"


def upgrade() -> None:
    create_table(
        "applied_hours",
        account_id(),
        moment("hour"),
        sa.Column("synced", sa.Integer(), nullable=False),
        sa.Column("unsynced", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        key=["account_id", "hour"],
    )


def downgrade() -> None:
    op.drop_table("applied_hours")
