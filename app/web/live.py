"""Live job states for every Server-Sent Events client of one process, from one source.

One task per process reads, once per round, what changed, in one statement, and hands it
to every subscriber that wants it: the running jobs changed since the last round (a
running worker's claims, reports and completions send no notification, which would
serialize the server's commits), the jobs that were running last round (did they end?),
and the jobs named on `JOB_CHANGED` (created, cancelled, requeued, retried, failed:
heard on one LISTEN connection per process). A round lasts `debounce` (100 ms), so a job
reporting a hundred times a second costs one event per round, and the database's work
does not grow with the number of clients. Without LISTEN (PgBouncer in transaction mode,
or the link lost), rounds last `poll_interval` and also read the pending jobs changed.

A subscriber keeps the latest state per job, not a queue: a slow client skips states it
had no time for, never holds the others up, and never grows without bound (past
`MAILBOX_JOBS` distinct jobs it is told to start over from a snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.faults import describe, is_outage
from app.models import JobStatus
from app.services.collection_jobs import JOB_CHANGED
from app.web import queries
from app.web.schemas import JobState
from app.worker.listening import Listener

log = logging.getLogger("app.web.live")

ROUND_TIMEOUT = 5.0
"""The longest one round may take: a link gone silent is then an outage, not a hang."""
MAILBOX_JOBS = 1000
REPLAY_EVENTS = 10_000
"""How many recent changes a reconnecting client can be given again (`Last-Event-ID`)."""
OVERLAP = timedelta(seconds=2)
"""How far back each round looks again: a write stamped before the last round's newest
`updated_at` but committed after it is still read (then recognised by its `updated_at`)."""


@dataclass(eq=False)
class Subscriber:
    """One client's view: `wants` decides which jobs; `take` gives what changed since."""

    wants: Callable[[JobState], bool]
    job_id: uuid.UUID | None = None
    """Set for one job's stream: only that job's changes are read for it."""
    _latest: dict[uuid.UUID, tuple[int, JobState]] = field(default_factory=dict)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _shown: dict[uuid.UUID, None] = field(default_factory=dict)
    """The jobs this client was sent (in its filter last it heard), oldest first."""
    overflowed: bool = False

    def shown(self, states: Iterable[JobState]) -> None:
        """`states` were sent to the client (a snapshot, a replay)."""
        for state in states:
            self._mark(state)

    def offer(self, seq: int, state: JobState) -> None:
        """A change, kept if the client wants the job, or was sent it and must hear that it
        left its filter (a `status=running` stream is told of the completion)."""
        if not self.wants(state) and state.id not in self._shown:
            return
        self._mark(state)
        self._latest.pop(state.id, None)  # the newest goes last: events stay in order
        self._latest[state.id] = (seq, state)
        if len(self._latest) > MAILBOX_JOBS:
            self._latest.clear()
            self.overflowed = True
        self._ready.set()

    def _mark(self, state: JobState) -> None:
        self._shown.pop(state.id, None)
        if self.wants(state):
            self._shown[state.id] = None
            if len(self._shown) > MAILBOX_JOBS * 10:  # forget the longest unchanged
                del self._shown[next(iter(self._shown))]

    async def wait(self) -> None:
        await self._ready.wait()

    def wake(self) -> None:
        self._ready.set()

    def take(self) -> list[tuple[int, JobState]]:
        self._ready.clear()
        taken = list(self._latest.values())
        self._latest.clear()
        return taken


class LiveJobs:
    """The process's one source of live job states (see the module's docstring)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        listen_url: URL | None,
        debounce: float = 0.1,
        poll_interval: float = 1.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self._engine = engine
        self._listen_url = listen_url
        self.debounce, self.poll_interval = debounce, poll_interval
        self._connect_timeout = connect_timeout
        self._subscribers: set[Subscriber] = set()
        self._heard: set[uuid.UUID] = set()
        self._resync = True
        self._paused = False
        self._since: datetime | None = None
        """The latest `updated_at` read (the database's clock at first): each round reads
        what changed after it, less `OVERLAP`."""
        self._running: set[uuid.UUID] = set()
        self._seen: dict[uuid.UUID, datetime] = {}
        """Each job's `updated_at` as last handed on (the running and the watched ones)."""
        self._recent: deque[tuple[int, uuid.UUID]] = deque(maxlen=REPLAY_EVENTS)
        self.seq = 0
        self.epoch = uuid.uuid4().hex[:8]
        """Event ids are `epoch.seq`: one from another process or an earlier run is
        recognised as such (the client gets a snapshot instead of a replay)."""
        self._listener: Listener | None = None
        self._task: asyncio.Task[None] | None = None
        self.ending = asyncio.Event()
        """Set by `end_streams`: every stream ends and no new one starts."""
        self.reads = 0
        """Statements sent for live states: what the benchmark holds to the client count."""

    @property
    def listening(self) -> bool:
        return self._listener is not None and self._listener.listening

    async def start(self) -> None:
        if self._listen_url is not None:
            self._listener = Listener(
                self._listen_url,
                [JOB_CHANGED],
                self._notified,
                listening_again=self._listening_again,
                ping_every=10.0,
                ping_timeout=5.0,
                connect_timeout=self._connect_timeout,
            )
            await self._listener.start()
        self._task = asyncio.create_task(self._run(), name="live job states")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener is not None:
            await self._listener.close(give_up_after=2.0)

    def end_streams(self) -> None:
        """End every event stream now (their clients reconnect, to another process): call
        it as the server begins to shut down, since a server waits for open streams, which
        never end by themselves. `python -m app.web` does."""
        self.ending.set()
        for subscriber in self._subscribers:
            subscriber.wake()

    def subscribe(self, subscriber: Subscriber) -> Subscriber:
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def event_id(self, seq: int) -> str:
        return f"{self.epoch}.{seq}"

    def changed_since(self, event_id: str) -> list[uuid.UUID] | None:
        """The jobs changed after `event_id`, if this process still knows; else None."""
        epoch, _, number = event_id.partition(".")
        if epoch != self.epoch or not number.isdigit():
            return None
        seq = int(number)
        if self._recent and seq < self._recent[0][0] - 1 and len(self._recent) == REPLAY_EVENTS:
            return None
        return list(dict.fromkeys(job for s, job in self._recent if s > seq))

    def _notified(self, _channel: str, payload: str) -> None:
        try:
            self._heard.add(uuid.UUID(payload))
        except ValueError:
            log.warning("ignored a %s notification that is not a job id", JOB_CHANGED)

    def _listening_again(self) -> None:
        self._resync = True  # what was told meanwhile was not heard: read the pending too

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.debounce if self.listening else self.poll_interval)
            try:
                async with asyncio.timeout(ROUND_TIMEOUT):  # a dead link is an outage
                    await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_outage(exc):  # our bug: loud, never retried as an outage
                    log.exception("live job states stopped: a bug, not an outage")
                    raise
                if not self._paused:  # once an outage, not once a round
                    log.warning("live job states paused: %s", describe(exc))
                self._paused = self._resync = True
                continue
            if self._paused:
                log.info("live job states resumed")
                self._paused = False

    async def _round(self) -> None:
        if not self._subscribers:
            self._heard.clear()
            self._running.clear()
            self._seen.clear()
            self._since = None
            return
        everything = any(s.job_id is None for s in self._subscribers)
        watched = {s.job_id for s in self._subscribers if s.job_id is not None}
        heard, self._heard = self._heard, set()
        ids = heard | self._running | (set() if everything and self.listening else watched)
        pending = everything and (self._resync or not self.listening)
        self._resync = False
        async with self._engine.connect() as conn:
            if self._since is None:
                self._since = await queries.database_clock(conn)
            self.reads += 1
            states = await queries.changed_states(
                conn, ids, self._since - OVERLAP, running=everything, pending=pending
            )
        changed = [s for s in states if self._seen.get(s.id) != s.updated_at]
        for state in states:
            self._seen[state.id] = state.updated_at
            self._since = max(self._since, state.updated_at)
        self._running = {s.id for s in states if s.status is JobStatus.RUNNING}
        keep = self._running | watched
        self._seen = {job: at for job, at in self._seen.items() if job in keep}
        self._hand_on(changed)

    def _hand_on(self, states: list[JobState]) -> None:
        for state in states:
            self.seq += 1
            self._recent.append((self.seq, state.id))
            for subscriber in list(self._subscribers):
                subscriber.offer(self.seq, state)
