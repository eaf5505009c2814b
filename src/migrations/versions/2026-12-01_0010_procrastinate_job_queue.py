"""the job queue: Procrastinate 3.10.0's schema in its own `procrastinate` schema (issue 12)

PostgreSQL only; on SQLite jobs live in memory inside `serve` and this migration does nothing.

The SQL is vendored (`src/migrations/vendor/procrastinate-3.10.0-schema.sql`), not read from the
installed package, because a migration must mean the same thing forever. Reading the package's
`schema.sql` at migration time would make this revision create 3.10's tables today and a later
release's tables after an upgrade, so a database migrated before the upgrade and one migrated
after would differ under the same revision, and the follow-up migration that applies the release's
own upgrade scripts (`procrastinate/sql/migrations/*.sql`) would fail on the second kind. Hence:
procrastinate is pinned below 3.11 in pyproject.toml; upgrading it means a new revision applying
the upstream migration files between the two versions (vendored the same way), and
`tests/core/test_jobs.py` fails until the migrated schema matches the installed package's.

The tables sit in their own schema so that our metadata comparisons and `alembic revision
--autogenerate` (which look at `public`) never see them; the job connector puts `procrastinate`
on its `search_path` (src/core/jobs.py).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 14:00:00
"""

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.util import await_only

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than imported: this revision must not change when the code does.
JOBS_SCHEMA = "procrastinate"
SCHEMA_SQL = Path(__file__).parents[1] / "vendor" / "procrastinate-3.10.0-schema.sql"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute(f"CREATE SCHEMA {JOBS_SCHEMA}")
    search_path = bind.execute(sa.text("SELECT current_setting('search_path')")).scalar_one()
    # Transaction-local, and restored below: later revisions in the same run keep `public`.
    bind.execute(sa.text("SELECT set_config('search_path', :path, true)"), {"path": JOBS_SCHEMA})
    # A multi-statement script with plpgsql bodies: asyncpg runs it whole (simple query
    # protocol) when given no parameters, inside the migration's transaction; SQLAlchemy's
    # execute would prepare it, which PostgreSQL refuses for several statements.
    asyncpg_connection = bind.connection.dbapi_connection.driver_connection  # type: ignore[union-attr]
    await_only(asyncpg_connection.execute(SCHEMA_SQL.read_text(encoding="utf-8")))
    bind.execute(sa.text("SELECT set_config('search_path', :path, true)"), {"path": search_path})


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP SCHEMA {JOBS_SCHEMA} CASCADE")
