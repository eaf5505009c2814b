"""every change is kept: `ledger_changes` and record versions (issue 13, history and change feed)

`ledger_changes`: one row per version of a synced invoice or account, written in the sync's
transaction. `commit_xid` is the writing transaction's id on PostgreSQL (the change feed serves
rows below the oldest running transaction, ordered by (commit_xid, id), so a transaction that took
a lower id but commits later is never skipped) and 0 on SQLite (one writer at a time: the id is
commit order; AUTOINCREMENT so that ids are never reused). `invoices.version` and
`accounts.version` say which version a record is at; records stored before this migration are at
version 1 with no change row (their history starts with their next change).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    # xid8 as bigint: an epoch-extended transaction id fits, and compares like one.
    commit_xid_default = "(pg_current_xact_id()::text::bigint)" if postgres else "0"
    op.create_table(
        "ledger_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column(
            "commit_xid",
            sa.BigInteger(),
            nullable=False,
            server_default=sa.text(commit_xid_default),
        ),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("record_type", sa.String(length=10), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_ledger_changes_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_ledger_changes_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_changes")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_ledger_changes_feed", "ledger_changes", ["organization_id", "commit_xid", "id"]
    )
    op.create_index("ix_ledger_changes_record", "ledger_changes", ["record_id", "version"])
    for table in ("invoices", "accounts"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    for table in ("accounts", "invoices"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("version")
    op.drop_index("ix_ledger_changes_record", table_name="ledger_changes")
    op.drop_index("ix_ledger_changes_feed", table_name="ledger_changes")
    op.drop_table("ledger_changes")
