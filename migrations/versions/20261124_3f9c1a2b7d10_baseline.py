"""Baseline: analysts and data_collection_logs as they were before collection jobs

Revision ID: 3f9c1a2b7d10
Revises:
Create Date: 2026-11-24

The DDL is `sql/baseline.sql`, the one definition of the pre-feature tables. Production
databases already hold these tables: stamp them with `alembic stamp 3f9c1a2b7d10` once.
"""

from collections.abc import Sequence

from alembic import op

from app.db.migrations import sql_statements
from app.db.settings import PROJECT_ROOT

revision: str = "3f9c1a2b7d10"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in sql_statements((PROJECT_ROOT / "sql" / "baseline.sql").read_text("utf-8")):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE data_collection_logs")
    op.execute("DROP TABLE analysts")
