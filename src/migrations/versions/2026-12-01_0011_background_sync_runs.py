"""background sync runs: queued runs, live progress, retries, the job that runs them (issue 12)

A run may now wait in the job queue (`queued`) before it runs; at most one per connection and
object type, which a partial unique index guards as `uq_sync_runs_one_running` does for running
runs. Its row shows live progress (pages, phase, seconds spent waiting on Xero's limits), counts
the retries of temporary failures (`attempts`), and names the job that runs it (`job_id`, and the
job attempt that holds its lease, so a re-queued job takes over the run of its dead attempt).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 14:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pages", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("phase", sa.String(length=30), nullable=True))
        batch_op.add_column(
            sa.Column("limit_wait_seconds", sa.Float(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("job_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("job_attempt", sa.Integer(), nullable=True))
        batch_op.create_index(
            "uq_sync_runs_one_queued",
            ["connection_id", "object_type"],
            unique=True,
            postgresql_where=sa.text("status = 'queued'"),
            sqlite_where=sa.text("status = 'queued'"),
        )


def downgrade() -> None:
    # Runs still waiting read as cancelled before this revision (nothing would run them).
    op.execute(
        "UPDATE sync_runs SET status = 'cancelled', error = 'cancelled', "
        "error_detail = 'Queued runs do not exist before revision 0011.' "
        "WHERE status = 'queued'"
    )
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_sync_runs_one_queued",
            postgresql_where=sa.text("status = 'queued'"),
            sqlite_where=sa.text("status = 'queued'"),
        )
        batch_op.drop_column("job_attempt")
        batch_op.drop_column("job_id")
        batch_op.drop_column("attempts")
        batch_op.drop_column("limit_wait_seconds")
        batch_op.drop_column("phase")
        batch_op.drop_column("pages")
