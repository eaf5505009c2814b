"""connection schedules and the last daily budget reading (issue 12, schedules)

`connection_schedules`: a connection's own sync intervals (unset: the settings' defaults), whether
it is scheduled, and the last `X-DayLimit-Remaining` its provider reported (the call limiter keeps
that per process only). An index on sync_runs (connection_id, object_type, started_at) lets the
scheduler find each connection's last run without reading the whole history every minute.

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-01 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "connection_schedules",
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("invoices_every_minutes", sa.Integer(), nullable=True),
        sa.Column("accounts_every_minutes", sa.Integer(), nullable=True),
        sa.Column("day_limit_remaining", sa.Integer(), nullable=True),
        sa.Column("day_limit_observed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_connection_schedules_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("connection_id", name=op.f("pk_connection_schedules")),
    )
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sync_runs_connection_type_started",
            ["connection_id", "object_type", "started_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_runs_connection_type_started")
    op.drop_table("connection_schedules")
