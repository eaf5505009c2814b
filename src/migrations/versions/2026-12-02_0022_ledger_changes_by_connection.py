"""an index of `ledger_changes` by connection and feed position

The announcer reads one connection's newest change and pages its changes, and a purge deletes
them: with only the organisation's feed index those scan every change of the organisation (and
the delete, the whole table).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02 01:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_ledger_changes_connection",
        "ledger_changes",
        ["connection_id", "commit_xid", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_changes_connection", table_name="ledger_changes")
