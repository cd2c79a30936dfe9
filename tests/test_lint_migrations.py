"""scripts/lint_migrations.py: every revision passes, and an unsafe one fails."""

from __future__ import annotations

from dataclasses import replace

from scripts.lint_migrations import (
    VERSIONS,
    accepted_risks,
    revision_sql,
    squawk,
    unsafe_calls,
)
from tests.helpers.tools import SCRIPTS, run_tool

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
    assert "app.db.migrate.safe" in problems[0]


def test_squawk_finds_an_index_built_without_concurrently_and_names_the_revision() -> None:
    scripts = revision_sql()
    assert [(s.path.split("_")[1], s.direction) for s in scripts][:3] == [
        ("3f9c1a2b7d10", "upgrade"),  # the baseline is never downgraded
        ("8e4d6b0c2a91", "upgrade"),
        ("8e4d6b0c2a91", "downgrade"),
    ]
    assert squawk(scripts) == []
    bad = "CREATE INDEX idx_logs_status ON data_collection_logs(status);\n"
    scripts[1] = replace(scripts[1], sql=scripts[1].sql + bad)
    [finding] = squawk(scripts)
    assert finding.rule == "require-concurrent-index-creation" and finding.locking
    assert finding.path == scripts[1].path and finding.path.startswith("app/migrations/versions/")
    assert finding.direction == "upgrade"
    assert finding.statement == "CREATE INDEX idx_logs_status ON data_collection_logs(status)"
    assert "concurrently" in str(finding) and "/tmp" not in str(finding)


def test_an_integer_column_is_a_choice_of_the_model_not_a_locking_hazard() -> None:
    scripts = revision_sql()
    added = "ALTER TABLE collection_jobs ADD COLUMN retries INTEGER;\n"
    scripts[1] = replace(scripts[1], sql=scripts[1].sql + added)
    assert [f.rule for f in squawk(scripts) if f.rule.startswith("prefer-bigint")] == []


def test_accepted_risks_are_listed_with_their_reason() -> None:
    source = (
        "from app.db.migrate import safe\n\n\n"
        "def upgrade() -> None:\n"
        "    safe.run(safe.rename_column('t', 'a', 'b', accepted='nothing reads t yet'))\n"
    )
    assert accepted_risks(source, "x.py") == ["x.py:5: accepted: nothing reads t yet"]


def test_plain_operations_accepted_by_comment_are_listed_with_their_reason_too() -> None:
    assert accepted_risks(UNSAFE_REVISION, "x.py") == [
        "x.py:9: accepted: op.execute(): a no-op, for the test"
    ]
