"""Alembic migrations, each on its own database (never inside the rolled-back transaction)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import URL

from app.db.embedded import server
from app.db.engine import connect
from app.db.errors import MarkerRefusedError
from app.db.migrate.feature_state import BASELINE_REVISION, FEATURE_REVISION
from app.db.migrate.introspect import Schema, diff_schemas
from app.db.migrate.steps import alembic_config
from app.db.reset.marker import marker_after_migration
from app.db.settings import PROJECT_ROOT, Environment
from app.db.urls import libpq_env
from tests.conftest import ScratchFactory
from tests.helpers.guide import BASELINE_SQL, fetch, run_script
from tests.helpers.tools import alembic, steps_of, url_env
from tests.test_init_db import reset
from tests.test_schema_parity import built_by_init_db, schema_of

BASELINE, FEATURE = BASELINE_REVISION, FEATURE_REVISION
WORKERS = "9b2e5f81c4d3"  # the worker runtime's tables (5031dfc20f74) and claim index
HEAD = str(ScriptDirectory.from_config(alembic_config()).get_current_head())
"""The newest revision: the feature's, or one written after it."""
LOG_INDEX = "idx_data_collection_logs_collection_job_id"
SELECT_LOGS = "SELECT id, analyst_id, records_collected FROM data_collection_logs ORDER BY id"


async def version(url: URL) -> str | None:
    rows = await fetch(url, "SELECT version_num FROM alembic_version")
    return rows[0][0] if rows else None


async def models_schema(scratch_db: ScratchFactory) -> Schema:
    return await schema_of(await built_by_init_db(scratch_db))


def test_there_is_a_single_head() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [HEAD]
    assert [r.revision for r in script.walk_revisions()][-2:] == [FEATURE, BASELINE]


async def test_upgrade_from_empty_gives_the_models_schema(scratch_db: ScratchFactory) -> None:
    url = await scratch_db()
    await alembic(url, "upgrade", "head")
    assert diff_schemas(await models_schema(scratch_db), await schema_of(url)) == []
    await alembic(url, "check")  # raises when the models and migrations disagree
    marker = await fetch(url, "SELECT environment, set_by FROM database_environment")
    assert [tuple(r) for r in marker] == [("test", "alembic")]


async def test_init_db_is_stamped_at_head(scratch_db: ScratchFactory) -> None:
    url = await built_by_init_db(scratch_db)
    assert await version(url) == HEAD
    await alembic(url, "upgrade", "head")
    await alembic(url, "check")


async def test_rows_survive_upgrade_downgrade_upgrade(scratch_db: ScratchFactory) -> None:
    url = await scratch_db()
    await alembic(url, "upgrade", BASELINE)
    await run_script(
        url,
        "INSERT INTO analysts (email, name) SELECT 'a' || g || '@x', 'A' || g"
        " FROM generate_series(1, 5) g;"
        "INSERT INTO data_collection_logs (analyst_id, collection_type, status, records_collected)"
        " SELECT id, 'news', 'success', 7 FROM analysts, generate_series(1, 200);",
    )
    before = await fetch(url, SELECT_LOGS)

    await alembic(url, "upgrade", "head")
    assert await fetch(
        url, "SELECT count(*) FROM data_collection_logs WHERE collection_job_id IS NOT NULL"
    ) == [(0,)]
    conn = await connect(url)
    try:
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="collection_job_id_fkey"):
            await conn.execute(
                "UPDATE data_collection_logs SET collection_job_id = $1", uuid.uuid4()
            )
    finally:
        await conn.close()

    await alembic(url, "downgrade", BASELINE)  # the feature's parent, whatever came after it
    assert await fetch(url, SELECT_LOGS) == before
    assert await fetch(url, "SELECT to_regclass('collection_jobs')") == [(None,)]

    await alembic(url, "upgrade", "head")
    assert await fetch(url, SELECT_LOGS) == before
    assert await fetch(url, "SELECT count(*) FROM analysts") == [(5,)]
    assert diff_schemas(await models_schema(scratch_db), await schema_of(url)) == []


async def test_an_interrupted_upgrade_finishes_when_run_again(scratch_db: ScratchFactory) -> None:
    url = await scratch_db()
    await alembic(url, "upgrade", BASELINE)
    # What a crash half-way leaves: the column added, no FK yet, and an INVALID index
    # from a concurrent build that failed (here: UNIQUE over duplicate values).
    await run_script(
        url,
        "INSERT INTO analysts (email, name) VALUES ('a@x', 'A');"
        "ALTER TABLE data_collection_logs ADD COLUMN collection_job_id UUID;"
        "INSERT INTO data_collection_logs (analyst_id, collection_type, status, collection_job_id)"
        " SELECT id, 'news', 'success', '00000000-0000-0000-0000-000000000001'"
        " FROM analysts, generate_series(1, 3);",
    )
    with pytest.raises(asyncpg.UniqueViolationError):
        await run_script(
            url,
            f"CREATE UNIQUE INDEX CONCURRENTLY {LOG_INDEX}"
            " ON data_collection_logs (collection_job_id)",
        )
    await run_script(url, "UPDATE data_collection_logs SET collection_job_id = NULL")
    valid = f"SELECT indisvalid FROM pg_index WHERE indexrelid = '{LOG_INDEX}'::regclass"
    assert await fetch(url, valid) == [(False,)]

    await alembic(url, "upgrade", "head")

    assert await fetch(url, valid) == [(True,)]
    assert await fetch(url, "SELECT count(*) FROM data_collection_logs") == [(3,)]
    assert diff_schemas(await models_schema(scratch_db), await schema_of(url)) == []


async def test_blocking_steps_wait_and_retry_behind_a_long_transaction(
    scratch_db: ScratchFactory, caplog: pytest.LogCaptureFixture
) -> None:
    url = await scratch_db()
    await alembic(url, "upgrade", BASELINE)
    holder = await connect(url)
    await holder.execute("BEGIN; LOCK TABLE data_collection_logs IN ROW EXCLUSIVE MODE")
    caplog.set_level(logging.WARNING, logger="app.db.migrate.steps")
    upgrade = asyncio.create_task(alembic(url, "upgrade", "head"))
    await asyncio.sleep(1.0)
    assert not upgrade.done()
    await holder.execute("COMMIT")
    await holder.close()
    await upgrade
    retries = [r.getMessage() for r in caplog.records if "lock not granted" in r.getMessage()]
    assert retries and "ALTER TABLE data_collection_logs ADD COLUMN" in retries[0]
    assert await version(url) == HEAD


async def test_refuses_a_database_marked_production_from_elsewhere(
    scratch_db: ScratchFactory,
) -> None:
    url = await scratch_db()
    await alembic(url, "upgrade", BASELINE)
    await run_script(url, "UPDATE database_environment SET environment = 'production'")
    for verb, target in (("upgrade", "head"), ("downgrade", "base")):
        with pytest.raises(CommandError, match="marked 'production' but APP_ENV is 'test'"):
            await alembic(url, verb, target)
    assert await version(url) == BASELINE
    await alembic(url, "upgrade", "head", environment=Environment.PRODUCTION)
    assert await version(url) == HEAD


def test_plain_sql_files_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "export_migration_sql.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def psql(url: URL, sql_file: str) -> None:
    binary = server.installed_binaries() / "psql"  # the client that ships with the server
    subprocess.run(
        [
            str(binary),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            str(PROJECT_ROOT / "sql" / sql_file),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, **libpq_env(url, connect_timeout=10)},  # no password on argv
    )


async def test_plain_sql_files_give_the_same_schema_and_can_be_rerun(
    scratch_db: ScratchFactory,
) -> None:
    url = await scratch_db()
    await alembic(url, "upgrade", BASELINE)
    baseline = await schema_of(url)

    psql(url, "collection_jobs_up.sql")
    psql(url, "collection_jobs_up.sql")
    by_alembic = await scratch_db()  # the files are the feature's revision, as offline SQL
    await alembic(by_alembic, "upgrade", FEATURE)
    assert diff_schemas(await schema_of(by_alembic), await schema_of(url), column_order=True) == []
    assert await version(url) == FEATURE

    psql(url, "collection_jobs_down.sql")
    psql(url, "collection_jobs_down.sql")
    assert await schema_of(url) == baseline
    assert await version(url) == BASELINE


async def test_the_worker_tables_plain_sql_files_match_their_revision(
    scratch_db: ScratchFactory,
) -> None:
    """The worker runtime's revision by its SQL files: as alembic builds it, run twice,
    and its rollback leaves the feature exactly as before, the guide's tables untouched."""
    url = await scratch_db()
    await alembic(url, "upgrade", FEATURE)
    feature = await schema_of(url)
    psql(url, "collection_workers_up.sql")
    psql(url, "collection_workers_up.sql")
    by_alembic = await scratch_db()
    await alembic(by_alembic, "upgrade", WORKERS)
    assert diff_schemas(await schema_of(by_alembic), await schema_of(url)) == []
    assert await version(url) == WORKERS
    psql(url, "collection_workers_down.sql")
    psql(url, "collection_workers_down.sql")
    assert await schema_of(url) == feature
    assert await version(url) == FEATURE


# --- what no command may do: drop the platform's tables, write when only reading ---------


async def test_no_downgrade_drops_the_tables_production_already_had(
    scratch_db: ScratchFactory,
) -> None:
    url = await scratch_db()
    await alembic(url, "upgrade", "head")
    await run_script(
        url,
        "INSERT INTO analysts (email, name) VALUES ('a@x', 'A');"
        "INSERT INTO data_collection_logs (analyst_id, collection_type, status)"
        " SELECT id, 'news', 'success' FROM analysts;",
    )
    refused = "refusing to downgrade below 3f9c1a2b7d10: analysts and data_collection_logs"
    for environment in (Environment.TEST, Environment.PRODUCTION):
        with pytest.raises(CommandError, match=refused):
            await alembic(url, "downgrade", "base", environment=environment)
    # Refused before its first step: the feature is still whole.
    assert await version(url) == HEAD
    assert await fetch(url, "SELECT to_regclass('collection_jobs') IS NOT NULL") == [(True,)]

    await alembic(url, "downgrade", BASELINE)
    await alembic(url, "downgrade", BASELINE)  # the documented rollback, repeated: a no-op
    with pytest.raises(CommandError, match=refused):
        await alembic(url, "downgrade", "-1")  # one step too many
    with pytest.raises(CommandError, match=refused):
        await asyncio.to_thread(command.downgrade, alembic_config(), f"{BASELINE}:base", True)
    assert await version(url) == BASELINE
    assert await fetch(url, "SELECT count(*) FROM analysts") == [(1,)]
    assert await fetch(url, "SELECT count(*) FROM data_collection_logs") == [(1,)]


async def bookkeeping(url: URL) -> list[tuple[object, ...]]:
    """The tables, the marker and the version label: what a read-only command must not touch."""
    tables = await fetch(
        url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
    )
    names = {t[0] for t in tables}
    marker = (
        await fetch(url, "SELECT environment, set_by, set_at FROM database_environment")
        if "database_environment" in names
        else []
    )
    label = await fetch(url, "SELECT * FROM alembic_version") if "alembic_version" in names else []
    return [*tables, *marker, *label]


async def built_with_plain_sql(scratch_db: ScratchFactory) -> URL:
    """The guide's method 2 on a database that predates the project: no Alembic, no marker."""
    url = await scratch_db()
    await run_script(url, BASELINE_SQL.read_text())
    psql(url, "collection_jobs_up.sql")
    return url


async def test_read_only_commands_write_nothing(scratch_db: ScratchFactory) -> None:
    plain = await built_with_plain_sql(scratch_db)
    migrated = await scratch_db()
    await alembic(migrated, "upgrade", "head")
    await run_script(migrated, "DROP TABLE database_environment")

    for url in (plain, migrated):
        before = await bookkeeping(url)
        for verb, *args in (("current",), ("history",), ("heads",), ("show", "head")):
            await alembic(url, verb, *args)
        if url is migrated:
            await alembic(url, "check")
            await alembic(url, "upgrade", "head")  # nothing to apply: nothing written
        assert await bookkeeping(url) == before


async def test_a_plain_sql_database_is_never_adopted_by_a_development_run(
    scratch_db: ScratchFactory,
) -> None:
    url = await built_with_plain_sql(scratch_db)
    await alembic(url, "stamp", HEAD, environment=Environment.DEVELOPMENT)
    await alembic(url, "downgrade", BASELINE, environment=Environment.DEVELOPMENT)
    await alembic(url, "upgrade", HEAD, environment=Environment.DEVELOPMENT)
    assert await fetch(url, "SELECT to_regclass('database_environment')") == [(None,)]
    with pytest.raises(MarkerRefusedError, match="origin is unknown"):
        await reset(url, environment=Environment.DEVELOPMENT)

    await alembic(url, "downgrade", BASELINE, environment=Environment.PRODUCTION)
    await alembic(url, "upgrade", HEAD, environment=Environment.PRODUCTION)
    marker = await fetch(url, "SELECT environment FROM database_environment")
    assert marker == [("production",)]


@pytest.mark.parametrize(
    ("marker", "environment", "had_tables", "written"),
    [
        (None, Environment.TEST, False, Environment.TEST),  # built from empty by us
        (None, Environment.DEVELOPMENT, True, None),  # unknown origin stays unknown
        (None, Environment.PRODUCTION, True, Environment.PRODUCTION),
        ("development", Environment.PRODUCTION, True, Environment.PRODUCTION),
        ("production", Environment.PRODUCTION, True, None),
        ("development", Environment.TEST, True, None),  # never moved between dev and test
    ],
)
def test_a_migration_never_makes_a_database_easier_to_wipe(
    marker: str | None, environment: Environment, had_tables: bool, written: Environment | None
) -> None:
    assert marker_after_migration(marker, environment, had_tables=had_tables) == written


def start_alembic(url: URL, *args: str, cwd: Path) -> subprocess.Popen[str]:
    """The alembic command line as an operator runs it."""
    base = {k: v for k, v in os.environ.items() if k not in ("APP_ENV", "DATABASE_URL")}
    return subprocess.Popen(
        [sys.executable, "-m", "alembic", "-c", str(PROJECT_ROOT / "alembic.ini"), *args],
        env={**base, **url_env(url)},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_exhausted_lock_retries_name_the_holder_in_one_line_and_a_rerun_resumes(
    scratch_db: ScratchFactory, tmp_path: Path
) -> None:
    url = await scratch_db()
    await alembic(url, "upgrade", BASELINE)
    holder = await connect(url, application_name="lock-holder")
    await holder.execute("BEGIN; LOCK TABLE data_collection_logs IN ROW EXCLUSIVE MODE")
    try:
        process = start_alembic(url, "-x", "lock_retry_seconds=2", "upgrade", "head", cwd=tmp_path)
        _, stderr = await asyncio.to_thread(process.communicate, timeout=60)
    finally:
        await holder.execute("ROLLBACK")
        pid = holder.get_server_pid()
        await holder.close()
    assert process.returncode != 0 and "Traceback" not in stderr, stderr
    failed = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(failed) == 1, stderr
    assert "gave up after" in failed[0]
    assert f"held by pid {pid} (lock-holder, idle in transaction, transaction open" in failed[0]
    assert "run the same command again to resume" in failed[0]
    assert await fetch(url, "SELECT to_regclass('collection_jobs') IS NOT NULL") == [(True,)]

    rerun = start_alembic(url, "upgrade", "head", cwd=tmp_path)
    await asyncio.to_thread(rerun.communicate, timeout=60)
    assert rerun.returncode == 0
    assert await version(url) == HEAD
    assert diff_schemas(await models_schema(scratch_db), await schema_of(url)) == []


async def test_a_concurrent_index_build_behind_an_old_snapshot_names_the_session(
    scratch_db: ScratchFactory, tmp_path: Path
) -> None:
    url = await scratch_db()
    await alembic(url, "upgrade", BASELINE)
    holder = await connect(url, application_name="old-snapshot")
    await holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM analysts")
    process = start_alembic(url, "upgrade", "head", cwd=tmp_path)
    try:
        assert process.stderr is not None
        seen: list[str] = []
        while not any("waiting for pid" in line for line in seen):
            line = await asyncio.wait_for(asyncio.to_thread(process.stderr.readline), 60)
            assert line, "alembic ended without saying it waits: " + "".join(seen)
            seen.append(line)
        assert f"pid {holder.get_server_pid()} (old-snapshot, idle in transaction" in seen[-1]
        assert "CREATE INDEX CONCURRENTLY" in seen[-1]
    finally:
        await holder.execute("ROLLBACK")
        await holder.close()
        await asyncio.to_thread(process.communicate, timeout=60)
    assert process.returncode == 0
    assert await version(url) == HEAD


async def at_baseline_with_logs(scratch_db: ScratchFactory, logs: int) -> URL:
    """A database at the baseline with one analyst and `logs` analysed log rows."""
    url = await scratch_db()
    await alembic(url, "upgrade", BASELINE)
    await run_script(
        url,
        "INSERT INTO analysts (email, name) VALUES ('a@x', 'A');"
        "INSERT INTO data_collection_logs (analyst_id, collection_type, status)"
        f" SELECT id, 'news', 'success' FROM analysts, generate_series(1, {logs});"
        "ANALYZE data_collection_logs;",
    )
    return url


async def alembic_lines_until(
    process: subprocess.Popen[str], wanted: str, then: Callable[[], Awaitable[object]]
) -> list[str]:
    """The command's stderr up to the first line with `wanted`; then `then()` (which lets
    the step go on) and the rest, once the command has ended."""
    seen: list[str] = []
    try:
        assert process.stderr is not None
        async with asyncio.timeout(60):  # other lines (whom it waits for) keep coming
            while not any(wanted in line for line in seen):
                line = await asyncio.to_thread(process.stderr.readline)
                assert line, f"alembic ended without '{wanted}': " + "".join(seen)
                seen.append(line)
    except TimeoutError:
        raise AssertionError(f"no '{wanted}' within 60 s: " + "".join(seen)) from None
    finally:
        await then()
        _, rest = await asyncio.to_thread(process.communicate, timeout=60)
    return seen + rest.splitlines()


async def test_long_steps_say_how_far_they_are(scratch_db: ScratchFactory, tmp_path: Path) -> None:
    url = await at_baseline_with_logs(scratch_db, 20000)
    # Keeps the index build in its wait for old snapshots, where the server reports it.
    holder = await connect(url, application_name="old-snapshot")
    await holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
    process = start_alembic(url, "-x", "progress_seconds=0.2", "upgrade", "head", cwd=tmp_path)

    async def release() -> None:
        await holder.execute("ROLLBACK")
        await holder.close()

    seen = await alembic_lines_until(process, "progress: waiting for old snapshots", release)
    assert process.returncode == 0
    index = next(line for line in seen if "progress: waiting for old snapshots" in line)
    assert "CREATE INDEX CONCURRENTLY" in index and "s in this step" in index


async def test_a_long_validation_says_what_it_scans(
    scratch_db: ScratchFactory, tmp_path: Path
) -> None:
    """A VALIDATE (here held up as it records the constraint valid, by a lock on that
    catalog row) says what it scans, how big it is and for how long, every interval."""
    url = await at_baseline_with_logs(scratch_db, 20000)
    steps = steps_of(FEATURE)
    validate = next(n for n, sql in enumerate(steps) if "VALIDATE CONSTRAINT" in sql)
    await run_script(url, ";\n".join(steps[:validate]))  # an upgrade stopped before it
    holder = await connect(url, application_name="constraint-row-holder")
    await holder.execute(
        "BEGIN; SELECT 1 FROM pg_constraint"
        " WHERE conname = 'data_collection_logs_collection_job_id_fkey' FOR UPDATE"
    )
    process = start_alembic(url, "-x", "progress_seconds=0.2", "upgrade", "head", cwd=tmp_path)

    async def release() -> None:
        await holder.execute("ROLLBACK")
        await holder.close()

    seen = await alembic_lines_until(process, "progress: validating", release)
    assert process.returncode == 0, "".join(seen)
    line = next(line for line in seen if "progress: validating" in line)
    assert "validating data_collection_logs_collection_job_id_fkey: scanning" in line
    assert "data_collection_logs (" in line and "~20000 rows" in line and "s so far" in line
    assert await fetch(
        url,
        "SELECT convalidated FROM pg_constraint"
        " WHERE conname = 'data_collection_logs_collection_job_id_fkey'",
    ) == [(True,)]
