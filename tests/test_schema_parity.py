"""The three ways give one schema: the feature's revision builds the migration guide's
schema to the last name and column position, and `init_db` (create_all) builds what the
migrations build at head, whatever revisions came after the feature."""

from __future__ import annotations

from sqlalchemy.engine import URL

from app.db.engine import create_engine
from app.db.migrate.feature_state import FEATURE_REVISION
from app.db.migrate.introspect import Schema, diff_schemas, moved_columns, read_schema
from app.db.reset.init_db import init_db
from app.db.settings import Environment
from tests.conftest import ScratchFactory
from tests.helpers.guide import (
    ALTER_LOGS,
    BASELINE_SQL,
    CHECK_COLUMN,
    CHECK_INDEXES,
    CHECK_TABLE,
    CREATE_TABLE,
    ROLLBACK,
    fetch,
    run_script,
)
from tests.helpers.tools import alembic


async def schema_of(url: URL) -> Schema:
    engine = create_engine(url, null_pool=True)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(read_schema)
    finally:
        await engine.dispose()


async def built_by_guide(scratch_db: ScratchFactory) -> URL:
    url = await scratch_db()
    await run_script(url, BASELINE_SQL.read_text(), CREATE_TABLE, ALTER_LOGS)
    return url


async def built_by_init_db(scratch_db: ScratchFactory) -> URL:
    url = await scratch_db()
    engine = create_engine(url, null_pool=True)
    try:
        await init_db(engine, environment=Environment.TEST)
    finally:
        await engine.dispose()
    return url


async def test_the_feature_revision_builds_exactly_the_guide_sql(
    scratch_db: ScratchFactory,
) -> None:
    guide = await schema_of(await built_by_guide(scratch_db))
    at_feature = await scratch_db()
    await alembic(at_feature, "upgrade", FEATURE_REVISION)

    assert set(guide) == {"analysts", "collection_jobs", "data_collection_logs"}
    jobs = guide["collection_jobs"]
    assert [c.name for c in jobs.columns][:2] == ["id", "analyst_id"]
    assert {"collection_jobs_pkey", "collection_jobs_analyst_id_fkey"} <= set(jobs.constraints)
    assert diff_schemas(guide, await schema_of(at_feature), column_order=True) == []


async def test_create_all_builds_what_the_migrations_build_at_head(
    scratch_db: ScratchFactory,
) -> None:
    models = await schema_of(await built_by_init_db(scratch_db))
    at_head = await scratch_db()
    await alembic(at_head, "upgrade", "head")
    assert diff_schemas(models, await schema_of(at_head)) == []


async def test_diff_reports_a_changed_default(scratch_db: ScratchFactory) -> None:
    url = await built_by_init_db(scratch_db)
    before = await schema_of(url)
    await run_script(
        url, "ALTER TABLE collection_jobs ALTER COLUMN overall_progress SET DEFAULT '0'"
    )
    after = await schema_of(url)
    assert diff_schemas(before, after) == [
        "collection_jobs.overall_progress: expected character varying(10) NULL "
        "DEFAULT '0.0'::character varying, got character varying(10) NULL "
        "DEFAULT '0'::character varying"
    ]


async def test_a_column_appended_by_a_migration_is_no_difference_only_information(
    scratch_db: ScratchFactory,
) -> None:
    """`ADD COLUMN` appends; create_all places a new column where the model declares it."""
    url = await built_by_guide(scratch_db)
    await run_script(url, "ALTER TABLE analysts ADD COLUMN team TEXT")
    appended = await schema_of(url)
    other = await scratch_db()
    await run_script(
        other,
        BASELINE_SQL.read_text().replace(
            "CREATE TABLE IF NOT EXISTS analysts (",
            "CREATE TABLE IF NOT EXISTS analysts (team TEXT,",
        ),
        CREATE_TABLE,
        ALTER_LOGS,
    )
    declared = await schema_of(other)
    assert diff_schemas(declared, appended) == []
    assert moved_columns(declared, appended) == [
        "analysts: columns in another order than the models declare: "
        + str([c.name for c in appended["analysts"].columns])
    ]
    assert diff_schemas(declared, appended, column_order=True) != []


async def test_guide_checks_and_rollback_work_as_written(scratch_db: ScratchFactory) -> None:
    url = await built_by_guide(scratch_db)

    assert [r[0] for r in await fetch(url, CHECK_TABLE)] == ["collection_jobs"]
    assert [r[0] for r in await fetch(url, CHECK_COLUMN)] == ["collection_job_id"]
    assert {r[0] for r in await fetch(url, CHECK_INDEXES)} >= {
        "idx_collection_jobs_analyst_id",
        "idx_collection_jobs_status",
        "idx_data_collection_logs_collection_job_id",
    }

    await run_script(url, ROLLBACK)
    assert await fetch(url, CHECK_TABLE) == []
    assert await fetch(url, CHECK_COLUMN) == []
    baseline = await scratch_db()
    await run_script(baseline, BASELINE_SQL.read_text())
    assert diff_schemas(await schema_of(baseline), await schema_of(url)) == []
