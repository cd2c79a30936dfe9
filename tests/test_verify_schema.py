"""scripts/verify_schema.py passes after each way of migrating and catches what differs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import URL

from app.db.settings import PROJECT_ROOT
from tests.conftest import ScratchFactory
from tests.guide import ALTER_LOGS, BASELINE_SQL, CREATE_TABLE, run_script
from tests.test_migrations import alembic, psql
from tests.test_schema_parity import built_by_init_db


def verify(url: URL, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env |= {"DATABASE_URL": url.render_as_string(hide_password=False), "APP_ENV": "test"}
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "verify_schema.py")],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_passes_after_each_way_of_migrating(
    scratch_db: ScratchFactory, tmp_path: Path
) -> None:
    by_alembic = await scratch_db()
    await alembic(by_alembic, "upgrade", "head")
    by_sql_file = await scratch_db()
    await alembic(by_sql_file, "upgrade", "3f9c1a2b7d10")
    psql(by_sql_file, "collection_jobs_up.sql")
    by_guide = await scratch_db()
    await run_script(by_guide, BASELINE_SQL.read_text(), CREATE_TABLE, ALTER_LOGS)
    by_init_db = await built_by_init_db(scratch_db)

    for url in (by_alembic, by_sql_file, by_guide, by_init_db):
        result = verify(url, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "FAIL" not in result.stdout and result.stdout.count("PASS") == 4


async def test_reports_each_difference_and_fails(
    scratch_db: ScratchFactory, tmp_path: Path
) -> None:
    url = await built_by_init_db(scratch_db)
    await run_script(
        url,
        "ALTER TABLE collection_jobs ALTER COLUMN progress SET NOT NULL;"
        "DROP INDEX idx_collection_jobs_status;"
        "UPDATE pg_constraint SET convalidated = false"
        " WHERE conname = 'data_collection_logs_collection_job_id_fkey';",
    )
    result = verify(url, tmp_path)
    assert result.returncode == 1
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert "FAIL  the guide's three indexes exist" in fails
    assert any("collection_jobs.progress" in line for line in fails)
    assert any("index idx_collection_jobs_status: expected" in line for line in fails)
    assert any("data_collection_logs_collection_job_id_fkey" in line for line in fails)


async def test_guide_checks_fail_before_migrating(
    scratch_db: ScratchFactory, tmp_path: Path
) -> None:
    url = await scratch_db()
    await alembic(url, "upgrade", "3f9c1a2b7d10")
    result = verify(url, tmp_path)
    assert result.returncode == 1
    assert "FAIL  table collection_jobs exists" in result.stdout
    assert "FAIL  table collection_jobs: missing" in result.stdout
