"""scripts/lint_migrations.py: every revision passes, and an unsafe one fails."""

from __future__ import annotations

from scripts.lint_migrations import VERSIONS, accepted_risks, offline_sql, squawk, unsafe_calls
from tests.tools import SCRIPTS, run_tool

UNSAFE_REVISION = """
from alembic import op
import sqlalchemy as sa


def upgrade() -> None:
    op.add_column("data_collection_logs", sa.Column("source", sa.Text()))
    op.create_index("idx_logs_source", "data_collection_logs", ["source"])
    op.execute("SELECT 1")  # lint: accepted a no-op, for the test
"""


def test_every_revision_passes_and_the_run_says_how_many_it_read() -> None:
    result = run_tool(str(SCRIPTS / "lint_migrations.py"), env={}, cwd=SCRIPTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    revisions = len(list(VERSIONS.glob("*.py")))
    assert f"lint_migrations: {revisions} revisions clean" in result.stdout


def test_plain_alembic_operations_fail_unless_accepted_with_a_reason() -> None:
    problems = unsafe_calls(UNSAFE_REVISION, "versions/x.py")
    assert [p.split(":")[1] for p in problems] == ["7", "8"]
    assert "op.add_column() is not lock-safe" in problems[0]
    assert "app.db.safe_migrations" in problems[0]


def test_squawk_catches_an_index_built_without_concurrently() -> None:
    upgrade, downgrade = offline_sql()
    assert "CONCURRENTLY" in upgrade and "DROP INDEX CONCURRENTLY" in downgrade
    bad = upgrade + "\nCREATE INDEX idx_logs_status ON data_collection_logs(status);\n"
    code, report = squawk(bad, downgrade)
    assert code != 0 and "require-concurrent-index-creation" in report


def test_accepted_risks_are_listed_with_their_reason() -> None:
    source = (
        "from app.db import safe_migrations as safe\n\n\n"
        "def upgrade() -> None:\n"
        "    safe.run(safe.rename_column('t', 'a', 'b', accepted='nothing reads t yet'))\n"
    )
    assert accepted_risks(source, "x.py") == ["x.py:5: accepted: nothing reads t yet"]


def test_plain_operations_accepted_by_comment_are_listed_with_their_reason_too() -> None:
    assert accepted_risks(UNSAFE_REVISION, "x.py") == [
        "x.py:9: accepted: op.execute(): a no-op, for the test"
    ]
