"""token refresh claims on oauth_grants (issue 10, tokens)

A refresh is claimed in a short transaction (`refresh_claim_id`, `refresh_claimed_until`) instead
of holding a row or database lock across the HTTP call to Xero.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refresh_claim_id", sa.Uuid(), nullable=True))
        batch_op.add_column(
            sa.Column("refresh_claimed_until", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("oauth_grants", schema=None) as batch_op:
        batch_op.drop_column("refresh_claimed_until")
        batch_op.drop_column("refresh_claim_id")
