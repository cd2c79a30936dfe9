"""Say, within seconds, when a command waits on another session, and name that session.

A DDL statement queued behind an open transaction looks exactly like a hung command; an
operator needs to know whom it waits for (pid, application, state, for how long) to
decide whether to wait, or to end that session.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

import asyncpg
from sqlalchemy.engine import URL

from app.db.engine import connect

Progress = Callable[[asyncpg.Connection, float], Awaitable[str | None]]
"""Says, from its own connection, how far the watched statement is (given seconds elapsed)."""

BLOCKERS_SQL = """
SELECT a.pid, coalesce(nullif(a.application_name, ''), '-'), coalesce(a.state, '-'),
       extract(epoch FROM now() - coalesce(a.xact_start, a.backend_start))::int
FROM unnest(pg_blocking_pids($1)) AS b(pid) JOIN pg_stat_activity a ON a.pid = b.pid
ORDER BY a.pid
"""

LOCK_HOLDERS_SQL = """
SELECT DISTINCT a.pid, coalesce(nullif(a.application_name, ''), '-'), coalesce(a.state, '-'),
       extract(epoch FROM now() - coalesce(a.xact_start, a.backend_start))::int
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.locktype = 'relation' AND l.pid <> pg_backend_pid()
  AND l.relation IN (SELECT to_regclass(n) FROM unnest(CAST(:names AS text[])) AS t(n))
ORDER BY a.pid
"""
"""Sessions holding any lock on the named tables (for after a lock timeout, when the
waiting is over and pg_blocking_pids no longer tells)."""


@dataclass(frozen=True)
class Session:
    pid: int
    application: str
    state: str
    seconds: int

    def __str__(self) -> str:
        return (
            f"pid {self.pid} ({self.application}, {self.state}, transaction open {self.seconds}s)"
        )


def describe(sessions: list[Session]) -> str:
    return "; ".join(str(s) for s in sessions) or "no session found"


class WaitWatcher:
    """While the block runs, report (within `poll` seconds) that `pid` waits, and for whom,
    and every `progress_every` seconds how far it is (`progress`).

    Runs in a thread with its own connection, so it works beside sync and async code.
    """

    def __init__(
        self,
        url: URL,
        pid: int,
        notify: Callable[[str], None],
        *,
        poll: float = 1.0,
        repeat: float = 10.0,
        progress: Progress | None = None,
        progress_every: float = 5.0,
    ) -> None:
        self._url, self._pid, self._notify = url, pid, notify
        self._poll, self._repeat = poll, repeat
        self._progress, self._progress_every = progress, progress_every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wait-watcher", daemon=True)

    def __enter__(self) -> WaitWatcher:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            asyncio.run(self._watch())
        except Exception:  # a report that cannot be made must not fail the command
            return

    async def _watch(self) -> None:
        if self._stop.wait(self._poll):
            return
        conn = await connect(self._url, application_name="collection-jobs-watch")
        reported: tuple[set[int], float] = (set(), 0.0)
        loop = asyncio.get_running_loop()
        started = last_progress = loop.time() - self._poll
        try:
            while not self._stop.is_set():
                sessions = [Session(*row) for row in await conn.fetch(BLOCKERS_SQL, self._pid)]
                pids = {s.pid for s in sessions}
                if sessions and (pids != reported[0] or loop.time() - reported[1] >= self._repeat):
                    self._notify(f"waiting for {describe(sessions)}")
                    reported = (pids, loop.time())
                if self._progress and loop.time() - last_progress >= self._progress_every:
                    line = await self._progress(conn, loop.time() - started)
                    if line:
                        self._notify(line)
                    last_progress = loop.time()
                if await asyncio.to_thread(self._stop.wait, min(self._poll, self._progress_every)):
                    return
        finally:
            await conn.close()


_INDEX_PROGRESS = """
SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total, lockers_done,
       lockers_total
FROM pg_stat_progress_create_index WHERE pid = $1
"""

_TABLE_SIZE = """
SELECT pg_size_pretty(pg_table_size(c.oid)), pg_table_size(c.oid), c.reltuples::bigint
FROM pg_class c WHERE c.oid = to_regclass($1)
"""


def index_build_progress(pid: int) -> Progress:
    """For CREATE INDEX CONCURRENTLY: its phase, how much of how much, percent and ETA."""

    async def progress(conn: asyncpg.Connection, elapsed: float) -> str | None:
        row = await conn.fetchrow(_INDEX_PROGRESS, pid)
        if row is None:
            return None
        phase, blocks_done, blocks_total, tuples_done, tuples_total, lockers_done, lockers = row
        for done, total, unit in (
            (blocks_done, blocks_total, "blocks"),
            (tuples_done, tuples_total, "rows"),
            (lockers_done, lockers, "transactions"),
        ):
            if total:
                share = done / total
                eta = f", about {elapsed * (1 - share) / share:.0f}s left" if share else ""
                return (
                    f"progress: {phase}: {done}/{total} {unit} ({share:.0%}), "
                    f"{elapsed:.0f}s in this step{eta}"
                )
        return f"progress: {phase}, {elapsed:.0f}s in this step"

    return progress


def scan_progress(table: str, what: str) -> Progress:
    """For a scan the server reports no progress of (VALIDATE): what it scans, how big,
    and how long it has run."""

    async def progress(conn: asyncpg.Connection, elapsed: float) -> str | None:
        row = await conn.fetchrow(_TABLE_SIZE, table)
        if row is None:
            return None
        pretty, _, rows = row
        count = f", ~{rows} rows" if rows >= 0 else ""
        return f"progress: {what}: scanning {table} ({pretty}{count}), {elapsed:.0f}s so far"

    return progress
