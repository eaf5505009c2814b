"""the reconciliation sweep: `accounts.deleted_at`, `sync_runs.found` and `sync_runs.corrected`
(issue 13)

An account Xero no longer lists in its whole chart is kept with status DELETED and the moment a
sync first missed it. A run records how many stored records it found differing from the
provider's although their timestamp had not moved, and how many it corrected.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("found", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("corrected", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("corrected")
        batch.drop_column("found")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("deleted_at")
