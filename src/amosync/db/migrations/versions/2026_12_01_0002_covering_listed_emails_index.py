"""listed_emails: a covering index for a contact's addresses

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 18:10:00

Without table statistics SQLite answered "the addresses of these contacts" by scanning
every row of the account through the primary key (account_id, email, amocrm_id), which
covers the query, rather than looking each contact up in (account_id, amocrm_id), which
did not. With the e-mail in the contact index it both covers and matches.
"""

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"


def upgrade() -> None:
    with op.batch_alter_table("listed_emails", schema=None) as batch_op:
        batch_op.drop_index("ix_listed_emails_contact")
        batch_op.create_index(
            "ix_listed_emails_contact", ["account_id", "amocrm_id", "email"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("listed_emails", schema=None) as batch_op:
        batch_op.drop_index("ix_listed_emails_contact")
        batch_op.create_index("ix_listed_emails_contact", ["account_id", "amocrm_id"], unique=False)
