"""scripts/verify_schema.py passes after each way of migrating and catches what differs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import URL

from app.db.migrate.feature_state import FEATURE_REVISION
from app.db.settings import PROJECT_ROOT
from tests.conftest import RoleFactory, ScratchFactory
from tests.helpers.guide import ALTER_LOGS, BASELINE_SQL, CREATE_TABLE, fetch, run_script
from tests.helpers.tools import alembic
from tests.test_migrations import psql
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
    await alembic(by_guide, "stamp", FEATURE_REVISION)  # the guide: what the feature built
    for url in (by_sql_file, by_guide):  # then any revision written after the feature
        await alembic(url, "upgrade", "head")
    by_init_db = await built_by_init_db(scratch_db)

    for url in (by_alembic, by_sql_file, by_guide, by_init_db):
        result = verify(url, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "FAIL" not in result.stdout and result.stdout.count("PASS") == 5
        assert "PASS  state: collection jobs are in place" in result.stdout


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
    assert (
        "FAIL  state: before the feature (labelled 3f9c1a2b7d10): run `alembic upgrade head`"
        in (result.stdout)
    )


async def test_reports_what_the_guides_schema_never_has(
    scratch_db: ScratchFactory, tmp_path: Path
) -> None:
    url = await built_by_init_db(scratch_db)
    await run_script(
        url,
        "ALTER TABLE data_collection_logs SET UNLOGGED;"
        'ALTER TABLE analysts ALTER COLUMN name TYPE VARCHAR(100) COLLATE "C";'
        "ALTER TABLE collection_jobs ENABLE ROW LEVEL SECURITY;"
        "CREATE POLICY own_jobs ON collection_jobs USING (true);"
        "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;"
        "CREATE TRIGGER touch BEFORE UPDATE ON analysts FOR EACH ROW EXECUTE FUNCTION touch();",
    )
    result = verify(url, tmp_path)
    assert result.returncode == 1
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert "FAIL  data_collection_logs: UNLOGGED expected False, got True" in fails
    assert any("analysts.name:" in line and "COLLATE C" in line for line in fails), fails
    assert "FAIL  collection_jobs: row-level security expected off, got enabled" in fails
    assert any("collection_jobs policy own_jobs" in line for line in fails), fails
    assert any("analysts trigger touch: expected none" in line for line in fails), fails


async def bookkeeping(url: URL) -> list[tuple[object, ...]]:
    return await fetch(
        url,
        "SELECT relname, relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE nspname = 'public' ORDER BY 1",
    )


async def test_an_interrupted_downgrade_is_named_with_what_finishes_it_either_way(
    scratch_db: ScratchFactory, tmp_path: Path
) -> None:
    url = await scratch_db()
    await alembic(url, "upgrade", FEATURE_REVISION)
    # The downgrade's first step ran, then the process died: still labelled the feature.
    await run_script(url, "DROP INDEX idx_data_collection_logs_collection_job_id")
    before = await bookkeeping(url)
    result = verify(url, tmp_path)
    assert await bookkeeping(url) == before  # read-only
    assert result.returncode == 1
    state = next(line for line in result.stdout.splitlines() if "state:" in line)
    assert "an interrupted downgrade" in state and "labelled 8e4d6b0c2a91" in state
    assert "`alembic downgrade 3f9c1a2b7d10`" in state
    assert "`alembic stamp 3f9c1a2b7d10` then `alembic upgrade head`" in state

    # Either way out works as it says.
    restored = await scratch_db()
    await alembic(restored, "upgrade", FEATURE_REVISION)
    await run_script(restored, "DROP INDEX idx_data_collection_logs_collection_job_id")
    await alembic(restored, "stamp", "3f9c1a2b7d10")
    await alembic(restored, "upgrade", "head")
    assert verify(restored, tmp_path).returncode == 0

    await alembic(url, "downgrade", "3f9c1a2b7d10")
    result = verify(url, tmp_path)
    assert "FAIL  state: before the feature (labelled 3f9c1a2b7d10)" in result.stdout


async def test_an_interrupted_run_of_the_sql_files_says_to_run_them_again(
    scratch_db: ScratchFactory, tmp_path: Path
) -> None:
    url = await scratch_db()
    await run_script(url, BASELINE_SQL.read_text(), CREATE_TABLE)
    result = verify(url, tmp_path)
    state = next(line for line in result.stdout.splitlines() if "state:" in line)
    assert "no Alembic label" in state and "run sql/collection_jobs_up.sql again" in state
    assert "INFO  environment marker: none" in result.stdout


async def test_a_role_without_temp_gets_every_other_check_and_the_reason(
    scratch_db: ScratchFactory, limited_role: RoleFactory, tmp_path: Path
) -> None:
    url = await built_by_init_db(scratch_db)
    role_url = await limited_role(url)
    await run_script(url, f'REVOKE TEMPORARY ON DATABASE "{url.database}" FROM PUBLIC')
    result = verify(role_url, tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "PASS  state: collection jobs are in place" in result.stdout
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 1 and "comparison with the models not run" in fails[0]
    assert f'GRANT TEMPORARY ON DATABASE "{url.database}"' in fails[0]
