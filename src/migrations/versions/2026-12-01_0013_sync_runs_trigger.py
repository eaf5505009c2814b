"""why a sync run exists: `sync_runs.trigger` (issue 12, schedules)

`request` (the API, the CLI) or `schedule` (queued by the scheduler). The scheduler lets a run
someone asked for just before a slot stand in for it, but never one it queued itself for the
slot before, however late that ran. Existing runs are taken as requested.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 16:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(
            sa.Column("trigger", sa.String(length=16), nullable=False, server_default="request")
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("trigger")
