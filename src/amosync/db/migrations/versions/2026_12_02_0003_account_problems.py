"""account_problems: conditions of an account a person must act on

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 19:00:00

One row per account and problem code (SPEC §3 `problems`): a revoked amoCRM authorization,
a Unisender key refused, an amoCRM block, a webhook amoCRM dropped or disabled. `since` is
when it was first seen; `until` ends a problem that expires by itself (a block).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account_problems",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_account_problems_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "code", name=op.f("pk_account_problems")),
    )


def downgrade() -> None:
    op.drop_table("account_problems")
