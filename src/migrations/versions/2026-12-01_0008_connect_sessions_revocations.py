"""connect sessions, consent tenants, pending revocations (issue 10, connect)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 10:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_states", schema=None) as batch_op:
        batch_op.add_column(sa.Column("link_secret_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("browser_binding_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("link_opened_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "oauth_grant_tenants",
        sa.Column("grant_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["oauth_grants.id"],
            name=op.f("fk_oauth_grant_tenants_grant_id_oauth_grants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("grant_id", "tenant_id", name=op.f("pk_oauth_grant_tenants")),
    )
    op.create_table(
        "pending_revocations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("refresh_token_encrypted", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_revocations")),
    )
    with op.batch_alter_table("pending_revocations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pending_revocations_next_attempt_at"), ["next_attempt_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("pending_revocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pending_revocations_next_attempt_at"))
    op.drop_table("pending_revocations")
    op.drop_table("oauth_grant_tenants")
    with op.batch_alter_table("oauth_states", schema=None) as batch_op:
        batch_op.drop_column("link_opened_at")
        batch_op.drop_column("browser_binding_hash")
        batch_op.drop_column("link_secret_hash")
