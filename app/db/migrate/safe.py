"""Lock-safe operations for Alembic revisions on big, busy tables.

    from app.db.migrate import safe

    def upgrade() -> None:
        safe.run(
            safe.add_column("data_collection_logs", "collection_job_id UUID"),
            safe.add_foreign_key(
                "data_collection_logs_collection_job_id_fkey",
                "data_collection_logs", "collection_job_id", "collection_jobs", "id",
            ),
            safe.create_index(
                "idx_data_collection_logs_collection_job_id",
                "data_collection_logs", "collection_job_id",
            ),
        )

Each operation is a list of `Step`s that `run` hands to `run_steps`: every step commits on
its own and can run again after an interruption at any point; a step that takes a lock
writers would queue behind runs under the short `lock_timeout`, retried within the budget;
long steps (VALIDATE, CONCURRENTLY) take only locks writers never wait for. Offline
(`--sql`) they render as the same statements.

What cannot be made safe on a big table (a type change, a volatile default, a NOT NULL
column without a default, a rename that running code reads) raises `UnsafeOperationError`
naming the safe alternative, unless the revision passes `accepted="why"`: the reason is
logged when the step runs.

Definitions are SQL text, not models: a revision describes the schema at its point in
history and must not change when the models do.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from app.db.errors import DatabaseSetupError
from app.db.migrate.steps import Step, run_steps, shorten

__all__ = [
    "Operation",
    "add_check",
    "add_column",
    "add_foreign_key",
    "add_unique",
    "alter_column_type",
    "create_index",
    "create_table",
    "drop_column",
    "drop_constraint",
    "drop_index",
    "drop_not_null",
    "drop_table",
    "rename_column",
    "run",
    "run_on",
    "set_not_null",
    "sql",
]

log = logging.getLogger(__name__)

Operation = list[Step]


class UnsafeOperationError(DatabaseSetupError):
    """An operation that would block or rewrite a big table; the message says instead what."""


def run_on(conn: Connection, /, *operations: Operation, **options: Any) -> None:
    """Run operations on a connection outside any revision (benchmarks, tests, one-off
    scripts), with the migration context options (`lock_retry_seconds`, ...)."""
    with Operations.context(MigrationContext.configure(conn, opts=options)):
        run(*operations)


def run(*operations: Operation) -> None:
    """Run the operations' steps in order (inside an Alembic revision)."""
    steps = [step for operation in operations for step in operation]
    for step in steps:
        if step.accepted:
            log.warning("accepted risk (%s): %s", step.accepted, shorten(step.sql, 70))
    run_steps(steps)


def sql(statement: str, *, reason: str, blocks_writers: bool = True) -> Operation:
    """Any other statement, with the reason it is fine here (in the revision's source,
    where the lint and a reviewer see it); it still runs under the lock rules."""
    if not reason.strip():
        raise UnsafeOperationError("safe.sql needs a reason")
    return [Step(statement, blocks_writers)]


def _refuse(what: str, instead: str, accepted: str | None) -> None:
    if not accepted:
        raise UnsafeOperationError(f"{what}; {instead} (or pass accepted='why' to do it anyway)")


def _lint_exception(rule: str, reason: str) -> str:
    """A squawk comment on the statement that follows it, with the reason it is fine."""
    return f"-- squawk-ignore {rule} -- {reason}\n"


def _columns(columns: str | Sequence[str]) -> str:
    return columns if isinstance(columns, str) else ", ".join(columns)


def _unless_exists(check: str, statement: str) -> str:
    """Run `statement` only if `check` (a query) finds nothing: a rerun is a no-op."""
    return (
        f"DO $$\nBEGIN\n    IF NOT EXISTS (\n        {check}\n    ) THEN\n"
        f"        {statement};\n    END IF;\nEND $$"
    )


def _constraint_exists(name: str, table: str) -> str:
    return (
        f"SELECT 1 FROM pg_constraint\n        WHERE conname = '{name}' "
        f"AND conrelid = '{table}'::regclass"
    )


# --- Tables -----------------------------------------------------------------------------


def create_table(
    name: str, definition: str, *, indexes: Sequence[tuple[str, str]] = ()
) -> Operation:
    """A new table, with plain indexes (`(name, columns)`) built while it is still empty.

    Its foreign keys to existing tables briefly lock those tables: the lock rules apply.
    """
    body = definition.strip("\n").rstrip()
    steps = [Step(f"CREATE TABLE IF NOT EXISTS {name} (\n{body}\n)", True)]
    for index, columns in indexes:
        steps.append(
            Step(
                _lint_exception("require-concurrent-index-creation", "a new, empty table")
                + f"CREATE INDEX IF NOT EXISTS {index} ON {name}({columns})",
                True,
            )
        )
    return steps


def drop_table(name: str) -> Operation:
    """Drop a table (its own indexes go with it). Drop what references it first."""
    reason = "safe.drop_table: nothing reads or references it any more"
    return [Step(_lint_exception("ban-drop-table", reason) + f"DROP TABLE IF EXISTS {name}", True)]


# --- Columns ----------------------------------------------------------------------------

_VOLATILE_DEFAULT = re.compile(r"\bDEFAULT\b[^,]*\(", re.IGNORECASE)


def add_column(table: str, definition: str, *, accepted: str | None = None) -> Operation:
    """Add a nullable column, or one with a constant default (no rewrite since PG 11)."""
    text = " ".join(definition.split())
    upper = text.upper()
    if re.search(r"\bREFERENCES\b", upper):
        _refuse(
            f"add_column({table!r}, {text!r}) adds a foreign key that scans the table under "
            "its lock",
            "add the column, then safe.add_foreign_key (NOT VALID, then VALIDATE)",
            accepted,
        )
    if re.search(r"\b(PRIMARY KEY|UNIQUE)\b", upper):
        _refuse(
            f"add_column({table!r}, {text!r}) builds an index while writers are blocked",
            "add the column, then safe.add_unique (a concurrent unique index)",
            accepted,
        )
    if _VOLATILE_DEFAULT.search(text):
        _refuse(
            f"add_column({table!r}, {text!r}) has a volatile default: every row is rewritten "
            "under the lock",
            "add it without a default (or with a constant one), set the default for new "
            "rows with ALTER COLUMN ... SET DEFAULT, and backfill old rows in batches",
            accepted,
        )
    if re.search(r"\bNOT NULL\b", upper) and "DEFAULT" not in upper:
        _refuse(
            f"add_column({table!r}, {text!r}) is NOT NULL without a default, which fails on "
            "existing rows",
            "add it nullable, backfill it, then safe.set_not_null",
            accepted,
        )
    return [Step(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {text}", True, accepted)]


def drop_column(table: str, column: str) -> Operation:
    """Drop a column: a catalog change only (no rewrite). Deploy code that no longer reads
    it first; drop its indexes and foreign keys before it, as the guide's rollback does."""
    reason = "safe.drop_column: no deployed code reads it any more"
    return [
        Step(
            _lint_exception("ban-drop-column", reason)
            + f"ALTER TABLE {table} DROP COLUMN IF EXISTS {column}",
            True,
        )
    ]


def alter_column_type(
    table: str, column: str, new_type: str, *, accepted: str | None = None
) -> Operation:
    """Change a column's type: most changes rewrite the table under an exclusive lock."""
    _refuse(
        f"alter_column_type({table!r}, {column!r}, {new_type!r}) rewrites the table while "
        "writers are blocked",
        "add a new column, backfill it in batches, switch the code, then drop the old one",
        accepted,
    )
    return [Step(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {new_type}", True, accepted)]


def rename_column(table: str, old: str, new: str, *, accepted: str | None = None) -> Operation:
    """Rename a column: instant, but running code that reads the old name breaks."""
    _refuse(
        f"rename_column({table!r}, {old!r}, {new!r}) breaks running code that reads {old}",
        "add the new column, write both, backfill, move the readers, then drop the old one",
        accepted,
    )
    exists = (
        f"SELECT 1 FROM information_schema.columns WHERE table_name = '{table}' "
        f"AND column_name = '{new}'"
    )
    return [
        Step(
            _unless_exists(exists, f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}"),
            True,
            accepted,
        )
    ]


def set_not_null(table: str, column: str) -> Operation:
    """NOT NULL without a long lock: a CHECK validated without blocking writers lets
    PostgreSQL (12+) set NOT NULL without scanning; the helper CHECK is dropped after."""
    check = f"{table}_{column}_nn_check"  # not PG 18's own name for NOT NULL
    return [
        *add_check(check, table, f"{column} IS NOT NULL"),
        Step(f"ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL", True),
        Step(
            _lint_exception("ban-drop-constraint", "the helper CHECK: NOT NULL holds it now")
            + f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {check}",
            True,
        ),
    ]


def drop_not_null(table: str, column: str) -> Operation:
    """Allow NULL again: a catalog change only."""
    return [Step(f"ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL", True)]


# --- Constraints ------------------------------------------------------------------------


def add_foreign_key(
    name: str,
    table: str,
    columns: str | Sequence[str],
    referent: str,
    referent_columns: str | Sequence[str],
) -> Operation:
    """NOT VALID (checks new rows only, no scan under the lock), then VALIDATE (scans under
    SHARE UPDATE EXCLUSIVE, which writers never wait for)."""
    add = (
        f"ALTER TABLE {table} ADD CONSTRAINT {name}\n"
        f"            FOREIGN KEY ({_columns(columns)}) "
        f"REFERENCES {referent}({_columns(referent_columns)}) NOT VALID"
    )
    return [
        Step(_unless_exists(_constraint_exists(name, table), add), True),
        Step(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}", False),
    ]


def add_check(name: str, table: str, condition: str) -> Operation:
    """A CHECK constraint: NOT VALID, then VALIDATE, as for a foreign key."""
    add = f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID"
    return [
        Step(_unless_exists(_constraint_exists(name, table), add), True),
        Step(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}", False),
    ]


def drop_constraint(name: str, table: str) -> Operation:
    """Drop a constraint: a catalog change only, under the short lock."""
    reason = "safe.drop_constraint: the revision's own decision (usually a downgrade)"
    return [
        Step(
            _lint_exception("ban-drop-constraint", reason)
            + f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}",
            True,
        )
    ]


def add_unique(name: str, table: str, columns: str | Sequence[str]) -> Operation:
    """A UNIQUE constraint on a concurrently built unique index (no scan under the lock)."""
    attach = f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE USING INDEX {name}"
    return [
        *create_index(name, table, columns, unique=True),
        Step(_unless_exists(_constraint_exists(name, table), attach), True),
    ]


# --- Indexes ----------------------------------------------------------------------------


def create_index(
    name: str,
    table: str,
    columns: str | Sequence[str],
    *,
    unique: bool = False,
    where: str | None = None,
) -> Operation:
    """CREATE INDEX CONCURRENTLY (partial with `where`); an INVALID leftover of an
    interrupted build is dropped first (a valid index of that name is kept, so a rerun is a
    no-op)."""
    drop_invalid = (
        f"DO $$\nBEGIN\n    IF EXISTS (\n        SELECT 1 FROM pg_index\n"
        f"        WHERE indexrelid = to_regclass('{name}') AND NOT indisvalid\n"
        f"    ) THEN\n        DROP INDEX {name};\n    END IF;\nEND $$"
    )
    kind = "UNIQUE INDEX" if unique else "INDEX"
    return [
        Step(drop_invalid, True),
        Step(
            f"CREATE {kind} CONCURRENTLY IF NOT EXISTS {name} ON {table}({_columns(columns)})"
            + (f" WHERE {where}" if where else ""),
            False,
        ),
    ]


def drop_index(name: str) -> Operation:
    return [Step(f"DROP INDEX CONCURRENTLY IF EXISTS {name}", False)]
