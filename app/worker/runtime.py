"""The worker: claims collection jobs, runs their collectors, and keeps every promise of
the runtime (docs/worker.md): wakes at once on a new job (LISTEN, with polling behind it),
heartbeats from a thread of its own, rescues jobs whose worker is gone (one rescuer at a
time, progress kept), fences every write to the current attempt, stops a cancelled job's
collectors at once, and on SIGTERM hands its jobs back with their progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from app.db.engine import create_pool
from app.db.errors import DatabaseSetupError
from app.db.faults import describe, is_outage
from app.services import collection_jobs as jobs
from app.worker.batching import Completions
from app.worker.collectors import Collectors
from app.worker.heartbeat import Heartbeat
from app.worker.job import JobRun, StatementBug, StopReason, StuckAction
from app.worker.listening import Listener
from app.worker.metrics import NO_METRICS, Observer

log = logging.getLogger(__name__)


class WorkerBugError(DatabaseSetupError):
    """A statement of the worker's own loop failed in a way no retry mends (a bug): the
    worker handed its jobs back and stopped; the command exits 1 with this line."""


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 4
    """Jobs run at once by this process."""
    type_concurrency: int = 4
    """Types of one job collected at once."""
    poll_interval: float = 2.0
    """Seconds between looks for work when no notification came (the only way without LISTEN)."""
    heartbeat_seconds: float = 2.0
    rescue_timeout: float = 15.0
    """An attempt with no heartbeat for this long is lost; its job is requeued."""
    max_lost_attempts: int = 3
    retries: int = 3
    """Retries of a collector's transient error, with exponential backoff and jitter."""
    retry_backoff: float = 0.5
    grace_seconds: float = 30.0
    """On SIGTERM, how long running jobs may finish before they are handed back."""
    listen: bool = True
    """False behind PgBouncer in transaction mode without `listen_url`: polling only."""
    listen_url: URL | None = None
    """A direct connection for LISTEN alone (PgBouncer in transaction mode cannot pass it
    on); the rest goes through the worker's URL."""
    stuck_after: float = 600.0
    """A running job with no progress for this long, while its worker lives, is stuck:
    logged once, and failed or handed back if `stuck_action` says so."""
    stuck_action: StuckAction = StuckAction.LOG
    """`log`, `fail` (the job fails saying so) or `requeue` (handed back, progress kept)."""
    pool_size: int = 5
    """Connections this process holds for claims, reports and ends (the heartbeat and
    LISTEN have their own): a bound on what many workers take from the server; a report
    waits for a free one, a few ms at most."""
    prepared_statements: bool = True
    """False behind PgBouncer in transaction mode (DB_DISABLE_PREPARED_STATEMENTS)."""


class _Connections:
    """The worker's pool: `async with connections() as conn`, a checkout that gives up
    after the link timeout rather than wait for a dead server."""

    def __init__(self, pool: asyncpg.Pool, timeout: float) -> None:
        self._pool, self._timeout = pool, timeout

    def __call__(self) -> Any:
        return self._pool.acquire(timeout=self._timeout)


@dataclass
class _Running:
    job: JobRun
    task: asyncio.Task[None]
    last_progress: float
    """When it last reported (the event loop's clock), to tell a stuck job."""
    flagged_stuck: bool = False


class Worker:
    """One worker process's runtime. `await Worker(url, collectors).run()`."""

    def __init__(
        self,
        url: URL,
        collectors: Collectors,
        settings: WorkerSettings | None = None,
        *,
        name: str | None = None,
        metrics: Observer = NO_METRICS,
    ) -> None:
        self.url, self.collectors = url, dict(collectors)
        self.settings = settings or WorkerSettings()
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._running: dict[uuid.UUID, _Running] = {}
        self._wake = asyncio.Event()
        self._wanted = True
        """Whether a claim may find work: set by a notification, the poll interval or a
        rescue; cleared by a claim that found fewer jobs than it asked for. A finished job
        alone does not send a claim to a queue known to be empty."""
        self._stopping = False
        self._hurry = False
        self._heartbeat: Heartbeat | None = None
        self._bug: StatementBug | None = None
        self._pool: _Connections | None = None
        self._claiming = asyncio.Lock()
        """Held by a claim until its jobs are in `_running`, and by the hand-back of orphans
        while it reads them: a run claimed meanwhile is never taken for an orphan (a slow
        claim's attempt looks older than it is: it was stamped when its transaction
        began)."""
        self.completions = Completions()
        # How long one connection or statement may take before the link counts as dead:
        # well inside the rescue timeout, so the worker notices before a rescuer acts.
        self._link_timeout = max(2.0, self.settings.rescue_timeout / 2)
        self.metrics = metrics

    # --- control -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; running jobs get the grace period. A second call stops at once."""
        self._hurry = self._stopping
        self._stopping = True
        self._wake.set()

    def connection(self) -> Any:
        """`async with worker.connection() as conn`: one of its pooled connections."""
        assert self._pool is not None, "the worker is not running"
        return self._pool()

    def giving_up(self) -> bool:
        """Whether a job's write should stop waiting for the database: only a worker that
        is shutting down gives up, at a second signal or past the rescue timeout without a
        heartbeat (its jobs are the rescue's then)."""
        silent = 0.0 if self._heartbeat is None else self._heartbeat.silent_for()
        return self._hurry or (self._stopping and silent >= self.settings.rescue_timeout)

    def _stop_attempts(self, attempt_ids: set[uuid.UUID], reason: StopReason) -> None:
        for attempt_id in attempt_ids:
            running = self._running.get(attempt_id)
            if running is not None and running.job.stop(reason):
                running.task.cancel()

    def _progressed(self, job_id: uuid.UUID) -> None:
        now = asyncio.get_running_loop().time()
        for running in self._running.values():
            if running.job.job.id == job_id:
                running.last_progress, running.flagged_stuck = now, False

    def _check_stuck(self) -> None:
        """A job of this living worker with no progress for `stuck_after`: logged once, and
        failed or handed back when `stuck_action` says so."""
        s = self.settings
        now = asyncio.get_running_loop().time()
        for attempt_id, running in list(self._running.items()):
            silent = now - running.last_progress
            if silent < s.stuck_after or running.flagged_stuck:
                continue
            running.flagged_stuck = True
            log.warning(
                "job %s: no progress for %.0fs while its worker is alive (%s)",
                running.job.job.id,
                silent,
                {
                    StuckAction.LOG: "left running",
                    StuckAction.FAIL: "failing it",
                    StuckAction.REQUEUE: "handing it back",
                }[s.stuck_action],
            )
            running.job.silent_for = silent
            if s.stuck_action is StuckAction.FAIL:
                self._stop_attempts({attempt_id}, StopReason.STUCK_FAIL)
            elif s.stuck_action is StuckAction.REQUEUE:
                self._stop_attempts({attempt_id}, StopReason.STUCK_REQUEUE)

    # --- the loop ------------------------------------------------------------------------

    async def run(self, *, until_empty: bool = False) -> None:
        """Work until `stop()` (or, with `until_empty`, until no job is left to claim).
        Raises `WorkerBugError` when a statement of its own loop failed for a bug (after
        handing its jobs back)."""
        s = self.settings
        link_timeout = self._link_timeout
        # Every statement is the service's, written once and sent by the driver: a pool of
        # plain asyncpg connections, each statement its own transaction, no SQLAlchemy
        # work per checkout. No ping before a statement: a dead connection fails it, and
        # every caller waits for the database and sends it again anyway.
        pool = await create_pool(
            self.url,
            size=s.pool_size,
            application_name="collection-worker",
            connect_timeout=link_timeout,
            # A dead link must fail a statement, not hang it: the loop then retries, and a
            # shutdown always finishes.
            command_timeout=link_timeout,
            statement_cache_size=100 if s.prepared_statements else 0,
        )
        self._pool = _Connections(pool, link_timeout)
        loop = asyncio.get_running_loop()
        listener: Listener | None = None
        upkeep: asyncio.Task[None] | None = None
        try:
            async with self.connection() as conn:
                worker_id = await jobs.register_worker(conn, self.name)
            self._heartbeat = Heartbeat(
                self.url,
                worker_id,
                interval=s.heartbeat_seconds,
                cut_off_after=s.rescue_timeout / 2,
                live=lambda: list(self._running),
                superseded=lambda gone: loop.call_soon_threadsafe(
                    self._stop_attempts, gone, StopReason.STOPPED_FROM_OUTSIDE
                ),
                cut_off=lambda: loop.call_soon_threadsafe(
                    self._stop_attempts, set(self._running), StopReason.CUT_OFF
                ),
            )
            self._heartbeat.start()
            if s.listen:
                listener = Listener(
                    s.listen_url or self.url,
                    [jobs.JOB_CREATED, jobs.ATTEMPT_STOPPED],
                    self._heard,
                    listening_again=self._listening_again,
                    ping_every=s.heartbeat_seconds,
                    ping_timeout=max(1.0, s.rescue_timeout / 4),
                    connect_timeout=link_timeout,
                )
                await listener.start()
            log.info(
                "worker %s started: collects %s; %d jobs at once; %s",
                self.name,
                ", ".join(sorted(self.collectors)),
                s.concurrency,
                "listening for new jobs" if s.listen else f"polling every {s.poll_interval:g}s",
            )
            upkeep = asyncio.create_task(self._upkeep(worker_id))
            await self._work(worker_id, until_empty)
            await self._shut_down()
            try:
                async with self.connection() as conn:
                    await jobs.worker_stopped(conn, worker_id)
            except Exception as exc:
                log.warning("could not record this worker's stop (%s)", describe(exc))
        finally:
            if upkeep is not None:
                upkeep.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await upkeep
            if self._heartbeat is not None:
                self._heartbeat.stop()
            # Closing politely waits for the server: over a dead link, give up after a while.
            if listener is not None:
                await listener.close(give_up_after=s.heartbeat_seconds)
            try:
                await asyncio.wait_for(pool.close(), link_timeout)
            except Exception:
                pool.terminate()
        if self._bug is not None:
            raise WorkerBugError(str(self._bug))

    def _heard(self, channel: str, payload: str) -> None:
        if channel == jobs.ATTEMPT_STOPPED:
            with contextlib.suppress(ValueError):
                self._stop_attempts({uuid.UUID(payload)}, StopReason.STOPPED_FROM_OUTSIDE)
        else:
            self._wake.set()

    def _listening_again(self) -> None:
        """Notifications sent while the worker was deaf are lost: look at the queue."""
        self._wanted = True
        self._wake.set()

    async def _upkeep(self, worker_id: uuid.UUID) -> None:
        """Every heartbeat interval: rescue the jobs of gone workers (once this worker has
        itself been linked for a rescue timeout: after an outage, the living are given
        time to be heard), hand back the runs this worker claimed without hearing so,
        check its own jobs for being stuck, and read the queue for the metrics. An outage
        skips a round; a bug is logged loudly, never mistaken for one."""
        s = self.settings
        failing = False
        while True:
            try:
                linked = self._heartbeat is not None and (
                    self._heartbeat.linked_for() >= s.rescue_timeout
                )
                # Bounded as a whole: no step of a round may hang it on a dead link.
                async with asyncio.timeout(2 * self._link_timeout):
                    async with self.connection() as conn:
                        rescued = (
                            await jobs.rescue(conn, s.rescue_timeout, s.max_lost_attempts)
                            if linked
                            else []
                        )
                        queue = await jobs.queue_state(conn) if self.metrics.wants_queue else None
                    # A run of this worker's it does not hold, older than two heartbeats,
                    # with no claim on its way: its claim's reply was lost. (The lock
                    # before the connection, as a claim takes them.)
                    async with self._claiming, self.connection() as conn:
                        orphans = await jobs.release_orphans(
                            conn, worker_id, list(self._running), 2 * s.heartbeat_seconds
                        )
                if queue is not None:
                    self.metrics.queue(*queue)
                failing = False
                if orphans:
                    self._wanted = True
                    self._wake.set()
                    log.warning(
                        "handed back %d job(s) claimed while the database was out of reach",
                        len(orphans),
                    )
                if rescued:
                    self._wanted = True
                    self._wake.set()
                    self.metrics.rescued(len(rescued))
                    log.warning("rescued %d job(s) whose worker stopped answering", len(rescued))
            except Exception as exc:
                if is_outage(exc):
                    if not failing:
                        log.warning("rescue skipped: database unreachable (%s)", describe(exc))
                    failing = True
                else:
                    log.error("bug: the rescue failed: %s", describe(exc))
            self._check_stuck()
            await asyncio.sleep(s.heartbeat_seconds)

    async def _work(self, worker_id: uuid.UUID, until_empty: bool) -> None:
        """Claim and wait, until stopped. An outage is retried with backoff, one line each
        time, never a crash; a bug stops the worker (its jobs handed back) loudly."""
        backoff = 0.0
        while not self._stopping:
            try:
                if await self._claim_and_wait(worker_id, until_empty):
                    return
                backoff = 0.0
            except Exception as exc:
                if not is_outage(exc):
                    self._bug = StatementBug("claim jobs", exc)
                    log.error("%s; stopping this worker", self._bug)
                    self._stopping = True
                    return
                backoff = min(max(backoff * 2, 0.5), 10.0)
                log.warning("database unreachable (%s); retrying in %.1fs", describe(exc), backoff)
                # A stop() (or a notification: the database is back) ends the wait; never
                # cleared here, so one that came during the failed round is not lost.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), backoff * random.uniform(0.8, 1.2))

    async def _claim_and_wait(self, worker_id: uuid.UUID, until_empty: bool) -> bool:
        """One round: claim up to the concurrency, wait for a wake-up, a finished job or
        the poll interval. True when `until_empty` and nothing is left."""
        s = self.settings
        # Cleared before the round's statements, never after: a stop() or notification that
        # comes while one is in flight is still set when the round waits.
        self._wake.clear()
        claimed_any = False
        while self._wanted and len(self._running) < s.concurrency and not self._stopping:
            free = s.concurrency - len(self._running)
            # One statement, its own transaction: the jobs claimed, as they are now. Bounded
            # as a whole: a checkout or a statement that hangs on a dead link is an outage.
            async with (
                self._claiming,
                asyncio.timeout(2 * self._link_timeout),
                self.connection() as conn,
            ):
                claimed = await jobs.claim_jobs(conn, worker_id, sorted(self.collectors), free)
                for one in claimed:
                    self.metrics.claimed(one.waited)
                    self._start(one)
            claimed_any = claimed_any or bool(claimed)
            if len(claimed) < free:
                self._wanted = False
                break
        if until_empty and not claimed_any and not self._running:
            return True
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
        waits += [r.task for r in self._running.values()]
        done, _ = await asyncio.wait(
            waits, timeout=s.poll_interval, return_when=asyncio.FIRST_COMPLETED
        )
        if not done or self._wake.is_set():  # the poll interval, or a notification
            self._wanted = True
        waits[0].cancel()
        # A finished job frees its place now, not when its done-callback gets to run.
        for attempt_id, running in list(self._running.items()):
            if running.task.done():
                del self._running[attempt_id]
        self.metrics.running(len(self._running))
        return False

    def _start(self, claimed: jobs.Claimed) -> None:
        job = claimed.job
        log.info(
            "job %s: %s, %s to %s%s",
            job.id,
            ", ".join(job.collection_types),
            f"{job.start_date:%Y-%m-%d}",
            f"{job.end_date:%Y-%m-%d}",
            f" (resuming at {job.overall_progress}%)" if job.progress else "",
        )
        run = JobRun(self, claimed)
        task = asyncio.create_task(run.run())
        now = asyncio.get_running_loop().time()
        self._running[claimed.attempt_id] = _Running(run, task, now)
        task.add_done_callback(lambda _t: self._running.pop(claimed.attempt_id, None))

    async def _shut_down(self) -> None:
        """Let running jobs finish within the grace period, then hand them back."""
        if self._running and not self._hurry:
            deadline = asyncio.get_running_loop().time() + self.settings.grace_seconds
            while self._running and not self._hurry:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                await asyncio.wait(
                    [r.task for r in self._running.values()],
                    timeout=min(remaining, 0.2),
                )
        self._stop_attempts(set(self._running), StopReason.SHUTDOWN)
        for task in [r.task for r in self._running.values()]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
