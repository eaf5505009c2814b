"""line items keyed by (invoice_id, position)

A line item's surrogate id meant nothing (the lines are replaced with their invoice) and minting
one per line was a sixth of a sync's CPU; the invoice and the position identify a line.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 15:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("invoice_line_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invoice_line_items_invoice_id"))
        batch_op.drop_constraint("pk_invoice_line_items", type_="primary")
        batch_op.drop_column("id")
        batch_op.create_primary_key("pk_invoice_line_items", ["invoice_id", "position"])


def downgrade() -> None:
    with op.batch_alter_table("invoice_line_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("id", sa.Uuid(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE invoice_line_items SET id = gen_random_uuid()")
    else:
        op.execute("UPDATE invoice_line_items SET id = lower(hex(randomblob(16)))")
    with op.batch_alter_table("invoice_line_items", schema=None) as batch_op:
        batch_op.alter_column("id", nullable=False)
        batch_op.drop_constraint("pk_invoice_line_items", type_="primary")
        batch_op.create_primary_key("pk_invoice_line_items", ["id"])
        batch_op.create_index(
            batch_op.f("ix_invoice_line_items_invoice_id"), ["invoice_id"], unique=False
        )
