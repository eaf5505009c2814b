"""batched `invoices.changed` / `accounts.changed` events: `webhook_change_cursors` (issue 15)

One row per connection whose changes are being announced: the change feed position
(commit_xid, change id) of the last change announced. No row: nothing was announced yet (the
first endpoint an organisation subscribes to these events sets its connections' rows to the
feed's present position, so it hears of changes from then on, not the whole history).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01 20:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_change_cursors",
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("commit_xid", sa.BigInteger(), nullable=False),
        sa.Column("change_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_webhook_change_cursors_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("connection_id", name=op.f("pk_webhook_change_cursors")),
    )


def downgrade() -> None:
    op.drop_table("webhook_change_cursors")
