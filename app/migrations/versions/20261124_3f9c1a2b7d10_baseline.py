"""Baseline: analysts and data_collection_logs as they were before collection jobs

Revision ID: 3f9c1a2b7d10
Revises:
Create Date: 2026-11-24

The DDL is `baseline.sql` beside the revisions, the one definition of the pre-feature
tables. Production databases already hold these tables: stamp them with
`alembic stamp 3f9c1a2b7d10` once. Never downgraded: that would drop every analyst and log.
A development database is started over with `scripts/init_db.py` instead.
"""

from collections.abc import Sequence
from pathlib import Path

from app.db import safe_migrations as safe
from app.db.migrate.steps import IrreversibleMigrationError, sql_statements

revision: str = "3f9c1a2b7d10"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IRREVERSIBLE = (
    "analysts and data_collection_logs predate this project and are never dropped by a "
    "migration; to start a development database over, run scripts/init_db.py"
)


def upgrade() -> None:
    statements = sql_statements((Path(__file__).parents[1] / "baseline.sql").read_text("utf-8"))
    reason = "the baseline: tables production had before this project (stamped there)"
    safe.run(*(safe.sql(statement, reason=reason) for statement in statements))


def downgrade() -> None:
    raise IrreversibleMigrationError(f"refusing to downgrade below {revision}: {IRREVERSIBLE}")
