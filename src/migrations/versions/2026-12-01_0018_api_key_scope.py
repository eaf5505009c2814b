"""API keys scoped to one organisation, with an optional expiry (issue 15)

`api_keys.organization_id`: the one organisation a key acts for (before, a key worked for every
organisation its user belonged to). `api_keys.expires_at`: after it, the key is refused.

Backfill: each existing key belongs to the organisation its user joined last at or before the
key was made (`users create` adds the membership, then mints the key in the same transaction, so
this is the organisation the key was minted for); a key older than all of its user's
memberships gets the user's oldest membership's organisation. A key whose user belongs to no
organisation opened nothing and is deleted. Downgrading drops both columns (keys work for all of
their user's organisations again).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL = """
UPDATE api_keys SET organization_id = COALESCE(
    (SELECT m.organization_id FROM memberships m
     WHERE m.user_id = api_keys.user_id AND m.created_at <= api_keys.created_at
     ORDER BY m.created_at DESC, m.id DESC LIMIT 1),
    (SELECT m.organization_id FROM memberships m
     WHERE m.user_id = api_keys.user_id
     ORDER BY m.created_at, m.id LIMIT 1)
)
"""


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("organization_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(BACKFILL)
    op.execute("DELETE FROM api_keys WHERE organization_id IS NULL")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.alter_column("organization_id", existing_type=sa.Uuid(), nullable=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_api_keys_organization_id_organizations"),
            "organizations",
            ["organization_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_index(
            batch_op.f("ix_api_keys_organization_id"), ["organization_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_organization_id"))
        batch_op.drop_constraint(
            batch_op.f("fk_api_keys_organization_id_organizations"), type_="foreignkey"
        )
        batch_op.drop_column("expires_at")
        batch_op.drop_column("organization_id")
