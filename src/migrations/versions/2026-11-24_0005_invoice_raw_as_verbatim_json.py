"""invoice raw as verbatim json (lz4 on PostgreSQL)

`jsonb` re-encodes every document and pglz compresses it: together most of PostgreSQL's time
in a sync. `json` keeps Xero's text as sent; lz4 compresses it several times faster.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A server built without lz4 keeps its default compression (the sync works either way).
_LZ4 = """
DO $$ BEGIN
  ALTER TABLE invoices ALTER COLUMN raw SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'lz4 compression unavailable: %', SQLERRM;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite stores JSON as text either way
    op.alter_column(
        "invoices",
        "raw",
        type_=sa.JSON(),
        existing_type=postgresql.JSONB(astext_type=sa.Text()),
        postgresql_using="raw::text::json",
    )
    op.execute(_LZ4)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.alter_column(
        "invoices",
        "raw",
        type_=postgresql.JSONB(astext_type=sa.Text()),
        existing_type=sa.JSON(),
        postgresql_using="raw::jsonb",
    )
