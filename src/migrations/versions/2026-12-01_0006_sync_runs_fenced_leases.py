"""sync runs fenced leases (issue 10, sync)

A running run's lease token: every page's transaction writes only while the run is still
`running` with this token, so a run declared dead (or cancelled by a disconnect) stops writing.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease", sa.Uuid(), nullable=True))


def downgrade() -> None:
    # Runs that ended as `cancelled` (a status this revision introduced) read as failed before it.
    op.execute(
        "UPDATE sync_runs SET status = 'failed', error = COALESCE(error, 'cancelled') "
        "WHERE status = 'cancelled'"
    )
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_column("lease")
