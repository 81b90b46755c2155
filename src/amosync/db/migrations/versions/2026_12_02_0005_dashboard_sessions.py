"""dashboard_sessions: the dashboard's logged-in sessions, so logging out ends one

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 19:50:00

A session cookie was only signed, so a logged-out cookie kept working until it expired.
Each login now stores the hash of its cookie here and logging out deletes it.
"""

import sqlalchemy as sa
from alembic import op

from amosync.db.ddl import create_index, create_table, drop_index, moment

revision: str = "0005"
down_revision: str | None = "0004"


def upgrade() -> None:
    create_table(
        "dashboard_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        moment("created_at"),
        moment("expires_at"),
        key=["id"],
    )
    create_index("dashboard_sessions", "ix_dashboard_sessions_expires_at", ["expires_at"])


def downgrade() -> None:
    drop_index("dashboard_sessions", "ix_dashboard_sessions_expires_at")
    op.drop_table("dashboard_sessions")
