"""Heartbeats on a thread of their own, with a connection of their own: a collector that
blocks the event loop cannot delay them, so a worker that lives is never rescued.

Each beat also says which attempts are no longer current (rescued, cancelled, finished
elsewhere); those are stopped. A worker that cannot beat for half the rescue timeout stops
all its collectors itself, before any rescuer may give their jobs to another worker: two
live attempts of one job never run at once, even when the network splits.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable

import asyncpg
from sqlalchemy.engine import URL

from app.db.engine import connect
from app.db.errors import first_line

log = logging.getLogger(__name__)

HEARTBEAT_SQL = """
WITH worker AS (
    UPDATE collection_workers SET heartbeat_at = now() WHERE id = $1 RETURNING id
)
UPDATE collection_job_attempts a SET heartbeat_at = now()
FROM collection_jobs j
WHERE a.id = ANY($2::uuid[]) AND a.ended_at IS NULL
  AND j.id = a.collection_job_id AND j.status = 'running' AND j.started_at = a.run_started_at
RETURNING a.id
"""


class Heartbeat(threading.Thread):
    """Beats every `interval` seconds until `stop()`."""

    def __init__(
        self,
        url: URL,
        worker_id: uuid.UUID,
        *,
        interval: float,
        cut_off_after: float,
        live: Callable[[], list[uuid.UUID]],
        superseded: Callable[[set[uuid.UUID]], object],
        cut_off: Callable[[], object],
    ) -> None:
        super().__init__(name="collection-worker-heartbeat", daemon=True)
        self._url, self._worker_id = url, worker_id
        self._interval, self._cut_off_after = interval, cut_off_after
        self._live, self._superseded, self._cut_off = live, superseded, cut_off
        self._stopping = threading.Event()
        # A slow beat is still a beat: wait for one up to a third of the time this worker
        # may go without, so that a loaded server does not make a living worker stop.
        self._patience = max(cut_off_after / 3, 0.1)

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        asyncio.run(self._beat())

    async def _beat(self) -> None:
        conn: asyncpg.Connection | None = None
        last_beat = time.monotonic()
        cut = False
        while not self._stopping.wait(self._interval):
            try:
                if conn is None or conn.is_closed():
                    conn = await connect(  # no named statements: works through PgBouncer
                        self._url, connect_timeout=self._patience, statement_cache_size=0
                    )
                attempts = self._live()
                current = await conn.fetch(
                    HEARTBEAT_SQL, self._worker_id, attempts, timeout=self._patience
                )
                last_beat, cut = time.monotonic(), False
                gone = set(attempts) - {row[0] for row in current}
                if gone:
                    self._superseded(gone)
            except Exception as exc:  # whatever failed, reconnect at the next beat
                if conn is not None:
                    conn.terminate()
                    conn = None
                silent_for = time.monotonic() - last_beat
                why = first_line(exc)
                log.warning("heartbeat failed (%.1fs without one): %s", silent_for, why)
                if silent_for >= self._cut_off_after and not cut:
                    cut = True
                    self._cut_off()
        if conn is not None:
            await conn.close()
