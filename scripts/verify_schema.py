"""Check a migrated database: the guide's checks, then the whole schema against the models.

    python scripts/verify_schema.py

Works after any of the three ways of migrating (Alembic, plain SQL, init_db). Read-only:
the expected schema is built from the models as temporary tables in a transaction that is
rolled back. Prints PASS/FAIL lines; exit 0 when everything matches, 1 on any difference,
and init_db's codes (2, 6, 7) for settings and connection failures.
"""

from __future__ import annotations

import sys

from sqlalchemy import Connection, text

from app.db.cli import run_command
from app.db.embedded import database_url
from app.db.engine import engine_from_settings, translate_connect_errors
from app.db.introspect import diff_schemas, read_schema
from app.db.settings import load_settings
from app.db.urls import describe_url
from app.models import Base

GUIDE_CHECKS = [
    (
        "table collection_jobs exists",
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'public' AND table_name = 'collection_jobs'",
        {"collection_jobs"},
    ),
    (
        "column data_collection_logs.collection_job_id exists",
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'data_collection_logs' AND column_name = 'collection_job_id'",
        {"collection_job_id"},
    ),
    (
        "the guide's three indexes exist",
        "SELECT indexname FROM pg_indexes "
        "WHERE tablename IN ('collection_jobs', 'data_collection_logs')",
        {
            "idx_collection_jobs_analyst_id",
            "idx_collection_jobs_status",
            "idx_data_collection_logs_collection_job_id",
        },
    ),
]


def verify(conn: Connection) -> list[tuple[bool, str]]:
    """(passed, what) for each guide check and each schema difference."""
    results = []
    for what, query, wanted in GUIDE_CHECKS:
        found = {row[0] for row in conn.execute(text(query))}
        results.append((wanted <= found, what))

    actual = read_schema(conn)
    with conn.begin_nested():
        # The models' schema as temporary tables: needs no CREATE right, leaves nothing.
        conn.execute(text("SET LOCAL search_path = pg_temp"))
        Base.metadata.create_all(conn)
        temp_schema = conn.execute(text("SELECT pg_my_temp_schema()::regnamespace::text"))
        expected = read_schema(conn, str(temp_schema.scalar_one()))
    differences = diff_schemas(expected, actual)
    results += [(False, line) for line in differences]
    if not differences:
        results.append(
            (
                True,
                "columns, types, defaults, indexes (valid) and constraints "
                "(validated) match the models",
            )
        )
    return results


async def run() -> int:
    settings = load_settings()
    url = await database_url(settings, settings.environment())
    print(f"verify_schema: {describe_url(url)}")
    engine = engine_from_settings(settings, url, null_pool=True)
    try:
        with translate_connect_errors(url):
            async with engine.connect() as conn:
                results = await conn.run_sync(verify)
                await conn.rollback()
    finally:
        await engine.dispose()
    for passed, what in results:
        print(f"{'PASS' if passed else 'FAIL'}  {what}")
    failed = sum(not passed for passed, _ in results)
    print(f"verify_schema: {'OK' if not failed else f'{failed} problem(s)'}")
    return 1 if failed else 0


def main() -> int:
    return run_command("verify_schema", run())


if __name__ == "__main__":
    sys.exit(main())
