"""The worker's LISTEN connection, kept alive. A connection that ends (a server restart, an
idle timeout, `pg_terminate_backend`) is noticed at once; one that goes silent (a NAT or a
firewall that forgot it closes nothing) is noticed by a ping that gets no answer. Either
way it is replaced, and the runtime is told: notifications sent meanwhile are lost, so it
looks at the queue. Without this a worker would quietly fall back to polling for good."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from app.db.engine import connect
from app.db.errors import first_line

log = logging.getLogger(__name__)

Heard = Callable[[str, str], None]
"""Called with a notification's channel and payload."""


class Listener:
    """`await start()` connects (or, the link not answering, leaves that to the watcher);
    from then on the connection is watched and replaced in a task of its own until
    `close()`."""

    def __init__(
        self,
        url: URL,
        channels: list[str],
        heard: Heard,
        *,
        listening_again: Callable[[], None],
        ping_every: float,
        ping_timeout: float,
        connect_timeout: float,
    ) -> None:
        self._url, self._channels, self._heard = url, channels, heard
        self._listening_again = listening_again
        self._ping_every, self._ping_timeout = ping_every, ping_timeout
        self._connect_timeout = connect_timeout
        self._conn: asyncpg.Connection | None = None
        self._ended = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        """Connected now (notifications sent while not are lost: look again)."""
        return self._conn is not None and not self._conn.is_closed()

    async def start(self) -> None:
        """Listen, or, when the link does not answer, poll until it does: a worker that
        starts during an outage works as soon as the database is back."""
        try:
            self._conn = await self._connect()
        except Exception as exc:
            log.warning("cannot listen yet (%s); polling meanwhile", first_line(exc))
        self._keeper = asyncio.create_task(self._keep())

    async def close(self, give_up_after: float) -> None:
        """Stop watching and close politely, a dead link given up on after `give_up_after` s."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await conn.close(timeout=give_up_after)
            except Exception:  # a dead link: nothing to be polite to
                conn.terminate()

    def _notified(self, _conn: Any, _pid: int, channel: str, payload: object) -> None:
        self._heard(channel, str(payload))

    async def _connect(self) -> asyncpg.Connection:
        conn = await connect(
            self._url,
            application_name="collection-worker-listen",
            connect_timeout=self._connect_timeout,
        )
        try:
            conn.add_termination_listener(lambda _conn: self._ended.set())
            async with asyncio.timeout(self._ping_timeout):  # a link gone silent meanwhile
                for channel in self._channels:
                    await conn.add_listener(channel, self._notified)
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def _keep(self) -> None:
        lost_since_logged = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), self._ping_every)
            self._ended.clear()
            conn = self._conn
            if conn is not None and not conn.is_closed():
                try:
                    await conn.execute("SELECT 1", timeout=self._ping_timeout)
                    continue
                except Exception as exc:  # no answer, or an error: the link is no good
                    why = first_line(exc)
            else:
                why = "the server closed it"
            if conn is not None:
                conn.terminate()
                self._conn = None
                log.warning("the LISTEN connection was lost (%s); listening again", why)
            try:
                self._conn = await self._connect()
            except Exception as exc:  # still out of reach: try again at the next ping
                if not lost_since_logged:
                    log.warning("cannot listen yet (%s); polling meanwhile", first_line(exc))
                    lost_since_logged = True
                continue
            lost_since_logged = False
            log.info("listening again")
            self._listening_again()
