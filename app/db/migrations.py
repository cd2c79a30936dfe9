"""Helpers for the Alembic migrations: lock-safe steps, the config, stamping.

On a big, busy table a DDL statement that waits for its lock makes every writer queue
behind it. So each step that needs a lock that blocks writers runs under a short
`lock_timeout` and, online, is retried with backoff; steps that never block writers
(CREATE INDEX CONCURRENTLY, VALIDATE CONSTRAINT) may wait as long as they need.
Every step commits on its own and is written to be re-run after a failure.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from alembic import op
from alembic.config import Config
from alembic.runtime.migration import MigrationContext, MigrationStep, RevisionStep
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from app.db.errors import DatabaseSetupError
from app.db.settings import PROJECT_ROOT

log = logging.getLogger(__name__)

LOCK_TIMEOUT = "25ms"
"""Longest a blocking step may make writers queue behind it."""
MAX_ATTEMPTS = 40
BACKOFF_START, BACKOFF_MAX = 0.2, 2.0
"""Seconds between attempts: doubling from BACKOFF_START up to BACKOFF_MAX, jittered."""

_LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True)
class Step:
    sql: str
    blocks_writers: bool
    """True when the statement takes a lock that writers of the table would queue behind."""


def run_steps(steps: Sequence[Step]) -> None:
    """Run `steps` outside any transaction, each committed on its own."""
    context = op.get_context()
    with context.autocommit_block():
        # An online index build should be gentle: parallel workers would take the CPU the
        # table's writers need (measured in benchmarks/migration_lock.py).
        op.execute("SET max_parallel_maintenance_workers = 0")
        if not context.as_sql:
            for step in steps:
                _run_with_retries(op.get_bind(), step.sql, _timeout(step))
        else:
            # Plain SQL can't retry: after a lock timeout the DBA runs the file again.
            current = None
            for step in steps:
                if _timeout(step) != current:
                    current = _timeout(step)
                    op.execute(f"SET lock_timeout = '{current}'")
                op.execute(step.sql)
            op.execute("RESET lock_timeout")
        op.execute("RESET max_parallel_maintenance_workers")


def _timeout(step: Step) -> str:
    return LOCK_TIMEOUT if step.blocks_writers else "0"


def _run_with_retries(conn: Connection, sql: str, timeout: str) -> None:
    summary = " ".join(sql.split())[:70]
    started = time.monotonic()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            conn.exec_driver_sql(f"SET lock_timeout = '{timeout}'")
            conn.exec_driver_sql(sql)
            conn.exec_driver_sql("RESET lock_timeout")
            log.info("%.3fs, attempt %d: %s", time.monotonic() - started, attempt, summary)
            return
        except DBAPIError as exc:
            lock_timeout = getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE
            if not lock_timeout or attempt == MAX_ATTEMPTS:
                raise
            delay = min(BACKOFF_START * 2 ** (attempt - 1), BACKOFF_MAX) * random.uniform(0.5, 1.0)
            log.warning(
                "lock not granted within %s (attempt %d/%d), retrying in %.2fs: %s",
                timeout,
                attempt,
                MAX_ATTEMPTS,
                delay,
                summary,
            )
            time.sleep(delay)


class IrreversibleMigrationError(DatabaseSetupError):
    """A downgrade would undo a revision that declares itself irreversible."""


def refuse_irreversible(steps: Sequence[MigrationStep]) -> None:
    """Refuse, before any step runs, a downgrade through a revision with `IRREVERSIBLE`.

    A revision sets `IRREVERSIBLE = "why"` when its downgrade would destroy what it did not
    create (the baseline describes tables production had long before this project).
    """
    for step in steps:
        if isinstance(step, RevisionStep) and not step.is_upgrade:
            reason = getattr(step.revision.module, "IRREVERSIBLE", None)
            if reason:
                raise IrreversibleMigrationError(
                    f"refusing to downgrade below {step.revision.revision}: {reason}"
                )


def sql_statements(script: str) -> list[str]:
    """Split a plain DDL script (no functions, no semicolons in literals) into statements."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [stmt.strip() for stmt in "\n".join(lines).split(";") if stmt.strip()]


def alembic_config() -> Config:
    return Config(str(PROJECT_ROOT / "alembic.ini"))


def stamp_head(conn: Connection) -> None:
    """Record the newest revision as applied (used by init_db, whose schema is head's)."""
    script = ScriptDirectory.from_config(alembic_config())
    MigrationContext.configure(conn).stamp(script, "heads")
