"""scripts/plan_migrations.py: every pending step with its lock and what it does to rows,
the tables' sizes, and nothing written."""

from __future__ import annotations

import re
from pathlib import Path

from app.db.migrate.steps import shorten
from tests.conftest import ScratchFactory
from tests.helpers.guide import fetch
from tests.helpers.tools import SCRIPTS, alembic, run_tool, url_env
from tests.test_migrations import at_baseline_with_logs, bookkeeping

PLAN = str(SCRIPTS / "plan_migrations.py")


async def test_the_plan_lists_each_pending_step_and_writes_nothing(
    scratch_db: ScratchFactory, tmp_path: Path
) -> None:
    url = await at_baseline_with_logs(scratch_db, 1000)
    before = await bookkeeping(url)
    result = run_tool(PLAN, env=url_env(url), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert await bookkeeping(url) == before
    lines = result.stdout.splitlines()
    assert "revision 8e4d6b0c2a91: 8 step(s)" in lines
    validate = lines.index(next(line for line in lines if "VALIDATE CONSTRAINT" in line))
    assert "lock SHARE UPDATE EXCLUSIVE; writers never wait; rows: scans" in lines[validate + 1]
    assert "tables: data_collection_logs (" in lines[validate + 1]
    assert "~1000 rows" in lines[validate + 1]
    add = next(i for i, line in enumerate(lines) if "ADD COLUMN IF NOT EXISTS" in line)
    assert (
        "lock ACCESS EXCLUSIVE; writers wait (lock_timeout 25ms, retried); rows: none"
        in (lines[add + 1])
    )
    assert await fetch(url, "SELECT to_regclass('collection_jobs')") == [(None,)]

    await alembic(url, "upgrade", "head")
    done = run_tool(PLAN, env=url_env(url), cwd=tmp_path)
    assert "nothing pending" in done.stdout


def test_a_statement_is_shortened_between_words_and_marked_where_cut() -> None:
    sql = "CREATE INDEX CONCURRENTLY idx_collection_jobs_progress ON collection_jobs(progress)"
    words = set(re.findall(r"[\w\"$]+", sql))
    for width in range(12, len(sql) + 5):
        short = shorten(sql, width)
        assert len(short) <= width
        if len(sql) <= width:
            assert short == sql
            continue
        assert short.endswith("…")
        assert set(re.findall(r"[\w\"$]+", short)) <= words, short  # no name cut in two
