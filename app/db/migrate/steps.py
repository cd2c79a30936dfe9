"""Helpers for the Alembic migrations: lock-safe steps, the config, stamping.

On a big, busy table a DDL statement that waits for its lock makes every writer queue
behind it. So each step that needs a lock that blocks writers runs under a short
`lock_timeout` and, online, is retried with backoff; steps that never block writers
(CREATE INDEX CONCURRENTLY, VALIDATE CONSTRAINT) may wait as long as they need.
Every step commits on its own and is written to be re-run after a failure.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import time
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from alembic import op
from alembic.config import Config
from alembic.runtime.migration import MigrationContext, MigrationStep, RevisionStep
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from app.db.errors import DatabaseSetupError
from app.db.migrate.waits import (
    LOCK_HOLDERS_SQL,
    Progress,
    Session,
    WaitWatcher,
    describe,
    index_build_progress,
    scan_progress,
)
from app.db.settings import DEFAULT_LOCK_RETRY_SECONDS

log = logging.getLogger(__name__)

LOCK_TIMEOUT = "25ms"
"""Longest a blocking step may make writers queue behind it."""
BACKOFF_START, BACKOFF_MAX = 0.2, 2.0
"""Seconds between attempts: doubling from BACKOFF_START up to BACKOFF_MAX, jittered."""
RETRY_OPTION = "lock_retry_seconds"
"""The migration context option (from the settings, or `alembic -x lock_retry_seconds=N`)."""
PROGRESS_OPTION = "progress_seconds"
"""How often long steps log their progress (`alembic -x progress_seconds=N`), default 5."""
WATCH_OPTION = "watch_url"
"""The migration context option with the database URL, to watch from a second connection."""

_LOCK_NOT_AVAILABLE = "55P03"
_IDENTIFIER = re.compile(r"\b[a-z_][a-z0-9_]*\b")


def one_line(sql: str) -> str:
    """A statement on one line, without its comment lines (squawk's exceptions)."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return " ".join(" ".join(lines).split())


def shorten(sql: str, width: int) -> str:
    """`one_line(sql)` in at most `width` characters: cut between words, never inside a
    name or a literal's word, and marked with "…" where it was cut."""
    flat = one_line(sql)
    if len(flat) <= width:
        return flat
    cut = flat[: width - 1]
    if _WORD_CHAR.match(flat[width - 1]):
        cut = _TRAILING_WORD.sub("", cut)
    return cut.rstrip() + "…"


_WORD_CHAR = re.compile(r'[\w"$]')
_TRAILING_WORD = re.compile(r'[\w"$]+$')


def names_in(sql: str) -> list[str]:
    """Every lower-case identifier in a statement, in order, once: its candidate tables."""
    return list(dict.fromkeys(_IDENTIFIER.findall(sql.lower())))


class LockRetriesExhaustedError(DatabaseSetupError):
    """A blocking step never got its lock within the retry budget; nothing is half-done."""


@dataclass(frozen=True)
class Step:
    sql: str
    blocks_writers: bool
    """True when the statement takes a lock that writers of the table would queue behind."""
    accepted: str | None = None
    """Why the revision runs this unsafe statement anyway (see app.db.migrate.safe)."""


_planned: ContextVar[list[Step] | None] = ContextVar("planned", default=None)


@contextlib.contextmanager
def planning() -> Iterator[list[Step]]:
    """Collect the steps that revisions' `upgrade()`/`downgrade()` would run, running
    nothing: for the plan command and for tests that interrupt each step."""
    steps: list[Step] = []
    token = _planned.set(steps)
    try:
        yield steps
    finally:
        _planned.reset(token)


def run_steps(steps: Sequence[Step]) -> None:
    """Run `steps` outside any transaction, each committed on its own."""
    plan = _planned.get()
    if plan is not None:
        plan.extend(steps)
        return
    context = op.get_context()
    with context.autocommit_block():
        # An online index build should be gentle: parallel workers would take the CPU the
        # table's writers need (measured in benchmarks/migration_lock.py).
        op.execute("SET max_parallel_maintenance_workers = 0")
        if not context.as_sql:
            conn = op.get_bind()
            budget = float(context.opts.get(RETRY_OPTION) or DEFAULT_LOCK_RETRY_SECONDS)
            watch_url = context.opts.get(WATCH_OPTION)
            pid = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
            every = float(context.opts.get(PROGRESS_OPTION) or 5.0)
            for step in steps:
                with _watching(watch_url, pid, step, every):
                    _run_with_retries(conn, step.sql, _timeout(step), budget)
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


def _watching(
    url: URL | None, pid: int, step: Step, every: float
) -> contextlib.AbstractContextManager[object]:
    """For a step that may run or wait long (VALIDATE, CONCURRENTLY): log whom it waits
    for, and every `every` seconds how far it is."""
    if url is None or step.blocks_writers:  # those give up after LOCK_TIMEOUT anyway
        return contextlib.nullcontext()
    summary = _summary(step.sql)

    def notify(message: str) -> None:
        log.warning("%s: %s", message, summary)

    progress: Progress | None = None
    if "CONCURRENTLY" in step.sql and "CREATE" in step.sql:
        progress = index_build_progress(pid)
    elif validated := re.search(r"ALTER TABLE (\w+) VALIDATE CONSTRAINT (\w+)", step.sql):
        progress = scan_progress(validated.group(1), f"validating {validated.group(2)}")
    return WaitWatcher(url, pid, notify, progress=progress, progress_every=every)


def _timeout(step: Step) -> str:
    return LOCK_TIMEOUT if step.blocks_writers else "0"


def _summary(sql: str) -> str:
    return shorten(sql, 70)


def _run_with_retries(conn: Connection, sql: str, timeout: str, budget: float) -> None:
    """Run `sql`, retrying lock timeouts with backoff until `budget` seconds have passed."""
    summary = _summary(sql)
    started = time.monotonic()
    holders: list[Session] = []
    attempt = 0
    while True:
        attempt += 1
        try:
            conn.exec_driver_sql(f"SET lock_timeout = '{timeout}'")
            conn.exec_driver_sql(sql)
            conn.exec_driver_sql("RESET lock_timeout")
            log.info("%.3fs, attempt %d: %s", time.monotonic() - started, attempt, summary)
            return
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                raise
        holders = _lock_holders(conn, sql) or holders
        elapsed = time.monotonic() - started
        delay = min(BACKOFF_START * 2 ** (attempt - 1), BACKOFF_MAX) * random.uniform(0.5, 1.0)
        if elapsed + delay > budget:
            raise LockRetriesExhaustedError(
                f"gave up after {attempt} attempts over {elapsed:.0f}s (lock_timeout {timeout}"
                f" each) on: {summary}; the lock was held by {describe(holders)}; the steps "
                "before it are kept: run the same command again to resume (or raise the "
                f"budget with -x {RETRY_OPTION}=SECONDS)"
            ) from None
        log.warning(
            "lock not granted within %s (attempt %d, %.0fs of %.0fs), held by %s; "
            "retrying in %.2fs: %s",
            timeout,
            attempt,
            elapsed,
            budget,
            describe(holders),
            delay,
            summary,
        )
        time.sleep(delay)


def _lock_holders(conn: Connection, sql: str) -> list[Session]:
    """Who holds locks on the tables `sql` names (asked right after a lock timeout)."""
    names = sorted(names_in(sql))
    rows = conn.execute(text(LOCK_HOLDERS_SQL), {"names": names})
    return [Session(*row) for row in rows]


class IrreversibleMigrationError(DatabaseSetupError, NotImplementedError):
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
    """Split a plain DDL script (no functions, no semicolons in literals) into statements.

    Comments are dropped, except squawk's `-- squawk-ignore`, which the offline SQL keeps.
    """
    lines = [
        line
        for line in script.splitlines()
        if not line.lstrip().startswith("--") or line.lstrip().startswith("-- squawk-ignore")
    ]
    return [stmt.strip() for stmt in "\n".join(lines).split(";") if stmt.strip()]


MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
"""The revisions, their environment and `alembic.ini`: inside the package, so an installed
copy (a production image, another team's suite) has them too."""


def alembic_config() -> Config:
    """The project's Alembic configuration, wherever the package is installed."""
    return Config(str(MIGRATIONS / "alembic.ini"))


def stamp_head(conn: Connection) -> None:
    """Record the newest revision as applied (used by init_db, whose schema is head's)."""
    script = ScriptDirectory.from_config(alembic_config())
    MigrationContext.configure(conn).stamp(script, "heads")
