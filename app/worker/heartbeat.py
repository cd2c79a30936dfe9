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
from app.db.faults import describe, is_outage
from app.services import collection_jobs as jobs

log = logging.getLogger(__name__)


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
        self._last_beat = time.monotonic()
        self._linked_since = float("-inf")  # it just registered: linked, no outage to undo

    def silent_for(self) -> float:
        """Seconds since the last beat that reached the database."""
        return time.monotonic() - self._last_beat

    def linked_for(self) -> float:
        """Seconds since this worker was last cut off (0 while it is): a rescuer judges
        other workers' silence only over a span it was itself connected for, since after an
        outage every living worker needs a beat or two to be heard again. A beat that is
        merely late (a loaded machine) does not count as a cut."""
        if self.silent_for() >= self._cut_off_after:
            return 0.0
        return time.monotonic() - self._linked_since

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        asyncio.run(self._beat())

    async def _beat(self) -> None:
        conn: asyncpg.Connection | None = None
        cut = False
        while not self._stopping.wait(self._interval):
            try:
                if conn is None or conn.is_closed():
                    conn = await connect(  # no named statements: works through PgBouncer
                        self._url, connect_timeout=self._patience, statement_cache_size=0
                    )
                attempts = self._live()
                async with asyncio.timeout(self._patience):
                    current = await jobs.heartbeat(conn, self._worker_id, attempts)
                if self.silent_for() >= self._cut_off_after:
                    self._linked_since = time.monotonic()  # linked again after a cut
                self._last_beat, cut = time.monotonic(), False
                gone = set(attempts) - current
                if gone:
                    self._superseded(gone)
            except Exception as exc:  # whatever failed, reconnect at the next beat
                if conn is not None:
                    conn.terminate()
                    conn = None
                silent_for = self.silent_for()
                why = describe(exc)
                if is_outage(exc):
                    log.warning("heartbeat failed (%.1fs without one): %s", silent_for, why)
                else:  # ours: as loud as a bug is, and the worker still stops when cut off
                    log.error("bug: the heartbeat failed: %s", why)
                if silent_for >= self._cut_off_after and not cut:
                    cut = True
                    self._cut_off()
        if conn is not None:
            await conn.close()
