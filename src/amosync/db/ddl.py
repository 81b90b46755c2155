"""What the migrations' tables share, said once.

Alembic's autogenerate writes every table out in full: the account's key with its cascade,
the named primary key, each index in its own batch block. Most tables here belong to an
account, so a migration written that way is mostly the same lines again. These helpers emit
exactly the DDL autogenerate wrote (the schema built by every revision, up and down, on
SQLite and PostgreSQL, is the same as before they existed), so a migration reads as the
table it makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op


def account_id(*, nullable: bool = False) -> sa.Column[Any]:
    """The column that says which account a row belongs to."""
    return sa.Column("account_id", sa.BigInteger(), nullable=nullable)


def moment(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    """A point in time, stored with its zone."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def create_table(
    table: str,
    *columns: sa.Column[Any],
    key: Sequence[str],
    references: dict[str, str] | None = None,
    unique: Sequence[str] = (),
) -> None:
    """Create `table` with a named primary key `key`.

    `references` maps a column to the table whose `id` it points at (deleting that row
    deletes this one); a table with an `account_id` column belongs to `accounts` unless
    `references` says otherwise. `unique` is a named unique constraint over those columns.
    """
    if references is None:
        references = (
            {"account_id": "accounts"} if any(c.name == "account_id" for c in columns) else {}
        )
    constraints: list[sa.Constraint] = [
        sa.ForeignKeyConstraint(
            [column],
            [f"{target}.id"],
            name=op.f(f"fk_{table}_{column}_{target}"),
            ondelete="CASCADE",
        )
        for column, target in references.items()
    ]
    constraints.append(sa.PrimaryKeyConstraint(*key, name=op.f(f"pk_{table}")))
    if unique:
        constraints.append(sa.UniqueConstraint(*unique, name=op.f(f"uq_{table}_{unique[0]}")))
    op.create_table(table, *columns, *constraints)


def create_index(
    table: str, name: str, columns: Sequence[str], *, unique: bool = False, where: str | None = None
) -> None:
    """An index on `table`; `where` makes it partial (on both SQLite and PostgreSQL)."""
    condition = None if where is None else sa.text(where)
    op.create_index(
        name,
        table,
        list(columns),
        unique=unique,
        sqlite_where=condition,
        postgresql_where=condition,
    )


def drop_index(table: str, name: str) -> None:
    op.drop_index(name, table_name=table)
