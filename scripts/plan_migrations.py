"""What `alembic upgrade head` would do to the target database, step by step, changing
nothing: for each pending step, the lock it takes, whether writers wait for it, whether it
scans or rewrites a table, and the current size of the tables it touches.

    python scripts/plan_migrations.py [--target head]

Read-only (one connection in a read-only transaction). Exit codes as for verify_schema:
0 done, 2 bad settings, 6 unreachable, 7 authentication failed, 11 refused by the server.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass

from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from app.db.cli import run_command
from app.db.embedded import database_url
from app.db.engine import engine_from_settings, translate_connect_errors
from app.db.migrate.steps import (
    LOCK_TIMEOUT,
    Step,
    alembic_config,
    names_in,
    one_line,
    planning,
    shorten,
)
from app.db.settings import load_settings
from app.db.urls import describe_url


@dataclass(frozen=True)
class Effect:
    lock: str
    work: str
    """What it does to the table's rows: "none", "scans" or "rewrites"."""


# First match wins; tested against the statement with DO-block guards stripped.
_EFFECTS: list[tuple[str, Effect]] = [
    (r"CREATE (UNIQUE )?INDEX CONCURRENTLY", Effect("SHARE UPDATE EXCLUSIVE", "scans")),
    (r"DROP INDEX CONCURRENTLY", Effect("SHARE UPDATE EXCLUSIVE", "none")),
    (r"CREATE (UNIQUE )?INDEX", Effect("SHARE", "scans")),
    (r"DROP INDEX", Effect("ACCESS EXCLUSIVE", "none")),
    (r"VALIDATE CONSTRAINT", Effect("SHARE UPDATE EXCLUSIVE", "scans")),
    (r"FOREIGN KEY .* NOT VALID", Effect("SHARE ROW EXCLUSIVE", "none")),
    (r"NOT VALID", Effect("ACCESS EXCLUSIVE", "none")),
    (r"UNIQUE USING INDEX", Effect("ACCESS EXCLUSIVE", "none")),
    (r"ALTER COLUMN \w+ (SET DATA )?TYPE", Effect("ACCESS EXCLUSIVE", "rewrites")),
    (r"SET NOT NULL", Effect("ACCESS EXCLUSIVE", "none (a validated CHECK proves it)")),
    (r"CREATE TABLE", Effect("SHARE ROW EXCLUSIVE on referenced tables", "none")),
    (r"ALTER TABLE|DROP TABLE", Effect("ACCESS EXCLUSIVE", "none")),
]
_GUARDED = re.compile(r"DO \$\$ BEGIN IF (NOT )?EXISTS \((.*)\) THEN (.*?); END IF; END \$\$")

_SIZES = """
SELECT c.relname, pg_size_pretty(pg_total_relation_size(c.oid)), c.reltuples::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname = ANY(:names)
"""


def statement_of(step: Step) -> str:
    """The step's statement on one line, without comments; a guarded DO block as
    "if <guard>: <statement>"."""
    flat = one_line(step.sql)
    guarded = _GUARDED.match(flat)
    if guarded:
        condition = "unless it exists" if guarded.group(1) else "if left INVALID"
        return f"{guarded.group(3)} ({condition})"
    return flat


def effect(step: Step) -> Effect:
    statement = statement_of(step)
    for pattern, found in _EFFECTS:
        if re.search(pattern, statement, re.IGNORECASE):
            return found
    return Effect("unknown", "unknown")


def pending(conn: Connection, target: str) -> list[tuple[str, list[Step]]]:
    """(revision, steps) for every revision between the database's label and `target`."""
    script = ScriptDirectory.from_config(alembic_config())
    exists = conn.execute(text("SELECT to_regclass('alembic_version')")).scalar()
    current = (
        conn.execute(text("SELECT version_num FROM alembic_version")).scalar() if exists else None
    )
    revisions = list(script.iterate_revisions(target, current))
    plan = []
    for revision in reversed(revisions):
        with planning() as steps:
            revision.module.upgrade()
        plan.append((revision.revision, list(steps)))
    return plan


def _size(pretty: str, rows: int) -> str:
    return pretty if rows < 0 else f"{pretty}, ~{rows} rows"  # -1: never analysed


def describe(conn: Connection, target: str) -> list[str]:
    plan = pending(conn, target)
    if not plan:
        return ["nothing pending: the database is at the target"]
    names = sorted({n for _, steps in plan for s in steps for n in names_in(s.sql)})
    sizes = {row[0]: (row[1], row[2]) for row in conn.execute(text(_SIZES), {"names": names})}
    lines = []
    for revision, steps in plan:
        lines.append(f"revision {revision}: {len(steps)} step(s)")
        for number, step in enumerate(steps, 1):
            found = effect(step)
            tables = [n for n in names_in(step.sql) if n in sizes]
            touched = ", ".join(f"{t} ({_size(*sizes[t])})" for t in tables)
            # Whether writers wait is the step's own declaration: it decides its lock_timeout.
            waits = (
                f"writers wait (lock_timeout {LOCK_TIMEOUT}, retried)"
                if step.blocks_writers
                else "writers never wait"
            )
            lines.append(
                f"  {number}. {shorten(statement_of(step), 90)}\n"
                f"     lock {found.lock}; {waits}; rows: {found.work}"
                + (f"; tables: {touched}" if touched else "")
            )
    return lines


async def run(target: str) -> int:
    settings = load_settings()
    url = await database_url(settings, settings.environment(), create=False)
    print(f"plan_migrations: {describe_url(url)}")
    engine = engine_from_settings(settings, url, null_pool=True)
    try:
        with translate_connect_errors(url):
            async with engine.connect() as conn:
                await conn.execute(text("SET TRANSACTION READ ONLY"))
                lines = await conn.run_sync(describe, target)
                await conn.rollback()
    finally:
        await engine.dispose()
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="head", help="revision to plan up to (head)")
    args = parser.parse_args(argv)
    return run_command("plan_migrations", run(args.target))


if __name__ == "__main__":
    sys.exit(main())
