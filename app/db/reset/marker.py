"""The environment marker: a one-row table recording which environment set a database up.

`init_db` writes it and so do the migrations. Before anything destructive they read it, so
a database set up for staging or production is never wiped because of a wrong APP_ENV.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from app.db.errors import MarkerRefusedError
from app.db.settings import RESETTABLE_ENVIRONMENTS, Environment

MARKER_TABLE = "database_environment"

CREATE_MARKER_SQL = f"""
CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    environment VARCHAR(20) NOT NULL,
    set_by VARCHAR(50) NOT NULL,
    set_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW()
)
"""

WRITE_MARKER_SQL = f"""
INSERT INTO {MARKER_TABLE} (environment, set_by) VALUES (:environment, :set_by)
ON CONFLICT (singleton) DO UPDATE
SET environment = EXCLUDED.environment, set_by = EXCLUDED.set_by, set_at = NOW()
"""

_USER_TABLES_SQL = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
"""


def read_marker(conn: Connection) -> str | None:
    """The recorded environment, or None when the database has no marker."""
    exists = conn.execute(text("SELECT to_regclass(:t)"), {"t": MARKER_TABLE}).scalar()
    if exists is None:
        return None
    value = conn.execute(text(f"SELECT environment FROM {MARKER_TABLE}")).scalar()
    return None if value is None else str(value)


def count_user_tables(conn: Connection) -> int:
    return int(conn.execute(text(_USER_TABLES_SQL)).scalar_one())


def write_marker(conn: Connection, environment: Environment, *, set_by: str) -> None:
    conn.execute(text(CREATE_MARKER_SQL))
    conn.execute(text(WRITE_MARKER_SQL), {"environment": environment.value, "set_by": set_by})


def check_reset_allowed(
    marker: str | None, environment: Environment, *, user_tables: int, force: bool
) -> None:
    """Refuse to wipe a database that the marker says belongs elsewhere.

    Staging and production databases are refused always, `force` or not; another
    environment's database, or tables with no marker (unknown origin), unless `force`.
    """
    if marker is not None and marker not in RESETTABLE_ENVIRONMENTS:
        raise MarkerRefusedError(
            f"refusing to reset: this database is marked {marker!r} and is never wiped "
            "(--force does not apply)"
        )
    if force:
        return
    if marker is not None and marker != environment:
        raise MarkerRefusedError(
            f"refusing to reset: this database is marked {marker!r} but APP_ENV is "
            f"{environment.value!r}; pass --force to reset it anyway"
        )
    if marker is None and user_tables > 0:
        raise MarkerRefusedError(
            f"refusing to reset: the database holds {user_tables} table(s) but no "
            f"{MARKER_TABLE} marker, so its origin is unknown; pass --force to reset it anyway"
        )


def marker_after_migration(
    marker: str | None, environment: Environment, *, had_tables: bool
) -> Environment | None:
    """The marker a migration that changed the database writes, or None to leave it.

    A migration never makes a database easier to wipe: it records staging or production
    (protection only grows), and a development or test environment only on a database
    that was empty before it. A database of unknown origin (tables, no marker, such as one
    migrated with the plain SQL files) stays unmarked, so init_db still asks for --force.
    """
    if environment not in RESETTABLE_ENVIRONMENTS:
        return None if marker == environment else environment
    if marker is None and not had_tables:
        return environment
    return None


def check_migration_allowed(marker: str | None, environment: Environment) -> None:
    """Refuse to migrate a staging or production database from any other environment.

    Unlike a reset, an unmarked database is fine: production databases predate the marker,
    and their first migration writes it.
    """
    if marker is not None and marker not in RESETTABLE_ENVIRONMENTS and marker != environment:
        raise MarkerRefusedError(
            f"refusing to migrate: this database is marked {marker!r} but APP_ENV is "
            f"{environment.value!r}; run the migration with APP_ENV={marker}"
        )
