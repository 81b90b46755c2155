"""account_problems: conditions of an account a person must act on

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 19:00:00

One row per account and problem code (SPEC §3 `problems`): a revoked amoCRM authorization,
a Unisender key refused, an amoCRM block, a webhook amoCRM dropped or disabled. `since` is
when it was first seen; `until` ends a problem that expires by itself (a block).
"""

import sqlalchemy as sa
from alembic import op

from amosync.db.ddl import account_id, create_table, moment

revision: str = "0003"
down_revision: str | None = "0002"


def upgrade() -> None:
    create_table(
        "account_problems",
        account_id(),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        moment("since"),
        moment("until", nullable=True),
        moment("updated_at"),
        key=["account_id", "code"],
    )


def downgrade() -> None:
    op.drop_table("account_problems")
