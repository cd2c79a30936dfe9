"""Check a migrated database: the guide's checks, then the whole schema against the models.

    python scripts/verify_schema.py

Works after any of the three ways of migrating (Alembic, plain SQL, init_db). Read-only:
the expected schema is built from the models as temporary tables in a transaction that is
rolled back (a role without the TEMPORARY privilege gets every other check and a line
saying why the comparison did not run). It says which state the feature is in and, after
an interrupted upgrade or downgrade, what to run to finish either way. Prints PASS/FAIL
lines; exit 0 when everything matches, 1 on any difference or unfinished state, and
init_db's codes (2, 6, 7, 11) for settings, connection and server failures.
"""

from __future__ import annotations

import argparse
import sys

from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from app.db.cli import run_command
from app.db.embedded import database_url
from app.db.engine import engine_from_settings, translate_connect_errors
from app.db.migrate.feature_state import feature_state
from app.db.migrate.introspect import diff_schemas, moved_columns, read_schema
from app.db.migrate.steps import alembic_config
from app.db.reset.marker import read_marker
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


def verify(conn: Connection) -> list[tuple[bool | None, str]]:
    """(passed, what) for each guide check, the feature's state and each schema difference;
    None for what is only information."""
    results: list[tuple[bool | None, str]] = []
    for what, query, wanted in GUIDE_CHECKS:
        found = {row[0] for row in conn.execute(text(query))}
        results.append((wanted <= found, what))

    actual = read_schema(conn)
    state = feature_state(conn)
    results.append((state.complete, f"state: {state.description}"))
    behind = _behind_head(conn)
    if behind:
        results.append((False, behind))
    marker = read_marker(conn)
    results.append(
        (
            None,
            f"environment marker: {marker}"
            if marker
            else "environment marker: none (init_db treats this database as of unknown origin)",
        )
    )
    role, database, may_use_temp = conn.execute(text(_TEMP_PRIVILEGE)).one()
    if not may_use_temp:
        return [
            *results,
            (
                False,
                "comparison with the models not run: it builds them as temporary tables, and "
                f"role {role} may not create any in database {database}; grant it with "
                f'GRANT TEMPORARY ON DATABASE "{database}" TO "{role}"',
            ),
        ]
    with conn.begin_nested():
        # The models' schema as temporary tables: needs no CREATE right, leaves nothing.
        conn.execute(text("SET LOCAL search_path = pg_temp"))
        Base.metadata.create_all(conn)
        temp_schema = conn.execute(text("SELECT pg_my_temp_schema()::regnamespace::text"))
        expected = read_schema(conn, str(temp_schema.scalar_one()))
    differences = diff_schemas(expected, actual)
    results += [(False, line) for line in differences]
    # A revision's ADD COLUMN appends: information, not a fault (see diff_schemas).
    results += [(None, line) for line in moved_columns(expected, actual)]
    if not differences:
        results.append(
            (
                True,
                "columns, types, defaults, collations, indexes (valid), constraints "
                "(validated), triggers and security match the models",
            )
        )
    return results


def _behind_head(conn: Connection) -> str | None:
    """What to run when the database is labelled with a revision older than the newest:
    the models (the comparison below) are the newest revision's schema."""
    if conn.execute(text("SELECT to_regclass('alembic_version')")).scalar() is None:
        return None
    labels = {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))}
    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    if not labels or labels == heads:
        return None
    return (
        f"revision: the database is at {', '.join(sorted(labels))}, the newest revision is "
        f"{', '.join(sorted(heads))}: run `alembic upgrade head`"
    )


_LABELS = {True: "PASS", False: "FAIL", None: "INFO"}

_TEMP_PRIVILEGE = """
SELECT current_user, current_database(),
       has_database_privilege(current_database(), 'TEMPORARY')
"""


async def run() -> int:
    settings = load_settings()
    url = await database_url(settings, settings.environment(), create=False)
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
        print(f"{_LABELS[passed]}  {what}")
    failed = sum(passed is False for passed, _ in results)
    print(f"verify_schema: {'OK' if not failed else f'{failed} problem(s)'}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="verify_schema.py",
        description="Check a migrated database against the guide and the models (read-only).",
    ).parse_args(argv)
    return run_command(
        "verify_schema", run(), interrupted=lambda: "interrupted; it changes nothing, run it again"
    )


if __name__ == "__main__":
    sys.exit(main())
