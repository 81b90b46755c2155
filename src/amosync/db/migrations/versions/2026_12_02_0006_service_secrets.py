"""service_secrets: the generated admin token, kept in the database

Revision ID: 0006
Revises: 0009
Create Date: 2026-12-02 19:20:00

With PostgreSQL there is no file beside the database to keep a generated admin token in, and
every `serve` process must accept the same one, at every restart.
"""

import sqlalchemy as sa
from alembic import op

from amosync.db.ddl import create_table, moment

revision: str = "0006"
down_revision: str | None = "0009"


def upgrade() -> None:
    create_table(
        "service_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value_enc", sa.Text(), nullable=False),
        moment("updated_at"),
        key=["name"],
    )


def downgrade() -> None:
    op.drop_table("service_secrets")
