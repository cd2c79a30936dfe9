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
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app.db.engine import autocommit, create_engine, create_sessionmaker, session_scope
from app.db.errors import DatabaseSetupError, first_line
from app.models import CollectionJob
from app.services import collection_jobs as jobs
from app.worker import attempts
from app.worker.collectors import CollectorContext, Collectors, FinalError
from app.worker.heartbeat import Heartbeat
from app.worker.listening import Listener
from app.worker.metrics import NO_METRICS, Observer
from app.worker.reporting import Reporter

log = logging.getLogger(__name__)

DATABASE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, DBAPIError, DatabaseSetupError)
"""What a lost or refusing database raises: retried, never a crash."""


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
    stuck_action: str = "log"
    """`log`, `fail` (the job fails saying so) or `requeue` (handed back, progress kept)."""
    pool_size: int = 5
    """Connections this process holds for claims, reports and ends (the heartbeat and
    LISTEN have their own): a bound on what many workers take from the server; a report
    waits for a free one, a few ms at most."""
    prepared_statements: bool = True
    """False behind PgBouncer in transaction mode (DB_DISABLE_PREPARED_STATEMENTS)."""


class _TypeFailed(Exception):
    def __init__(self, collection_type: str, cause: BaseException) -> None:
        detail = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        super().__init__(f"{collection_type}: {detail}")


@dataclass
class _Running:
    job_id: uuid.UUID
    run: datetime
    task: asyncio.Task[None]
    last_progress: float
    """When it last reported (the event loop's clock), to tell a stuck job."""
    reason: str | None = field(default=None)
    """Why it was stopped from outside: cancelled, superseded, cut off, shutdown, stuck."""
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
        self._next_rescue = 0.0
        self.metrics = metrics

    # --- control -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; running jobs get the grace period. A second call stops at once."""
        self._hurry = self._stopping
        self._stopping = True
        self._wake.set()

    def _stop_attempts(self, attempt_ids: set[uuid.UUID], reason: str) -> None:
        for attempt_id in attempt_ids:
            running = self._running.get(attempt_id)
            if running is not None and running.reason is None:
                running.reason = reason
                running.task.cancel()

    def _progressed(self, job_id: uuid.UUID) -> None:
        now = asyncio.get_running_loop().time()
        for running in self._running.values():
            if running.job_id == job_id:
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
                running.job_id,
                silent,
                {"log": "left running", "fail": "failing it", "requeue": "handing it back"}.get(
                    s.stuck_action, s.stuck_action
                ),
            )
            if s.stuck_action in ("fail", "requeue"):
                self._stop_attempts({attempt_id}, f"stuck:{s.stuck_action}:{silent:.0f}")

    def _cancelled(self, job_id: uuid.UUID) -> None:
        self._stop_attempts(
            {a for a, r in self._running.items() if r.job_id == job_id}, "cancelled"
        )

    # --- the loop ------------------------------------------------------------------------

    async def run(self, *, until_empty: bool = False) -> None:
        """Work until `stop()` (or, with `until_empty`, until no job is left to claim)."""
        s = self.settings
        # How long one connection or statement may take before the link counts as dead:
        # well inside the rescue timeout, so the worker notices before a rescuer acts.
        link_timeout = max(2.0, s.rescue_timeout / 2)
        engine = create_engine(
            self.url,
            pool_size=s.pool_size,
            max_overflow=0,
            application_name="collection-worker",
            connect_timeout=link_timeout,
            disable_prepared_statements=not s.prepared_statements,
            # A dead link must fail a statement, not hang it: the loop then retries, and a
            # shutdown always finishes.
            command_timeout=link_timeout,
            # No ping before every statement: a dead connection fails the statement, and
            # the loop retries it anyway.
            pre_ping=False,
        )
        loop = asyncio.get_running_loop()
        listener: Listener | None = None
        heartbeat: Heartbeat | None = None
        try:
            async with autocommit(engine) as conn:
                worker_id = await attempts.register_worker(conn, self.name)
            heartbeat = Heartbeat(
                self.url,
                worker_id,
                interval=s.heartbeat_seconds,
                cut_off_after=s.rescue_timeout / 2,
                live=lambda: list(self._running),
                superseded=lambda gone: loop.call_soon_threadsafe(
                    self._stop_attempts, gone, "superseded"
                ),
                cut_off=lambda: loop.call_soon_threadsafe(
                    self._stop_attempts, set(self._running), "cut off"
                ),
            )
            heartbeat.start()
            if s.listen:
                listener = Listener(
                    s.listen_url or self.url,
                    [jobs.JOB_CREATED, jobs.JOB_CANCELLED],
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
            await self._work(engine, worker_id, until_empty)
            await self._shut_down(engine)
            try:
                async with autocommit(engine) as conn:
                    await attempts.worker_stopped(conn, worker_id)
            except DATABASE_ERRORS as exc:
                log.warning("could not record this worker's stop (%s)", first_line(exc))
        finally:
            if heartbeat is not None:
                heartbeat.stop()
            # Closing politely waits for the server: over a dead link, give up after a while.
            if listener is not None:
                await listener.close(give_up_after=s.heartbeat_seconds)
            with contextlib.suppress(*DATABASE_ERRORS):
                await asyncio.wait_for(engine.dispose(), link_timeout)

    def _heard(self, channel: str, payload: str) -> None:
        if channel == jobs.JOB_CANCELLED:
            with contextlib.suppress(ValueError):
                self._cancelled(uuid.UUID(payload))
        else:
            self._wake.set()

    def _listening_again(self) -> None:
        """Notifications sent while the worker was deaf are lost: look at the queue."""
        self._wanted = True
        self._wake.set()

    async def _work(self, engine: AsyncEngine, worker_id: uuid.UUID, until_empty: bool) -> None:
        """Claim and wait, until stopped; a lost database is retried with backoff, one line
        each time, never a crash."""
        backoff = 0.0
        while not self._stopping:
            try:
                if await self._claim_and_wait(engine, worker_id, until_empty):
                    return
                backoff = 0.0
            except DATABASE_ERRORS as exc:
                backoff = min(max(backoff * 2, 0.5), 10.0)
                log.warning(
                    "database unreachable (%s); retrying in %.1fs", first_line(exc), backoff
                )
                # A stop() (or a notification: the database is back) ends the wait; never
                # cleared here, so one that came during the failed round is not lost.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), backoff * random.uniform(0.8, 1.2))

    async def _claim_and_wait(
        self, engine: AsyncEngine, worker_id: uuid.UUID, until_empty: bool
    ) -> bool:
        """One round: rescue when due, claim up to the concurrency, wait for a wake-up, a
        finished job or the poll interval. True when `until_empty` and nothing is left."""
        s = self.settings
        loop = asyncio.get_running_loop()
        # Cleared before the round's statements, never after: a stop() or notification that
        # comes while one is in flight is still set when the round waits.
        self._wake.clear()
        if loop.time() >= self._next_rescue:
            async with autocommit(engine) as conn:
                rescued = await attempts.rescue(conn, s.rescue_timeout, s.max_lost_attempts)
                queue = await attempts.queue_state(conn) if self.metrics.wants_queue else None
            if queue is not None:
                self.metrics.queue(*queue)
            if rescued:
                self._wanted = True
                self.metrics.rescued(len(rescued))
                log.warning("rescued %d job(s) whose worker stopped answering", len(rescued))
            self._next_rescue = loop.time() + s.heartbeat_seconds
        self._check_stuck()
        claimed_any = False
        while self._wanted and len(self._running) < s.concurrency and not self._stopping:
            free = s.concurrency - len(self._running)
            async with autocommit(engine) as conn, AsyncSession(bind=conn) as session:
                # One statement, its own transaction: the jobs claimed, as they are now.
                claimed = await attempts.claim(session, worker_id, sorted(self.collectors), free)
            for one in claimed:
                self.metrics.claimed(one.waited)
                self._start(engine, one)
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

    def _start(self, engine: AsyncEngine, claimed: attempts.Claimed) -> None:
        job = claimed.job
        assert job.started_at is not None
        log.info(
            "job %s: %s, %s to %s%s",
            job.id,
            ", ".join(job.collection_types),
            f"{job.start_date:%Y-%m-%d}",
            f"{job.end_date:%Y-%m-%d}",
            f" (resuming at {job.overall_progress}%)" if job.progress else "",
        )
        task = asyncio.create_task(self._run_job(engine, claimed.attempt_id, job))
        now = asyncio.get_running_loop().time()
        self._running[claimed.attempt_id] = _Running(job.id, job.started_at, task, now)
        task.add_done_callback(lambda _t: self._running.pop(claimed.attempt_id, None))

    async def _shut_down(self, engine: AsyncEngine) -> None:
        """Let running jobs finish within the grace period, then hand them back."""
        tasks = [r.task for r in self._running.values()]
        if tasks and not self._hurry:
            deadline = asyncio.get_running_loop().time() + self.settings.grace_seconds
            while self._running and not self._hurry:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                await asyncio.wait(
                    [r.task for r in self._running.values()],
                    timeout=min(remaining, 0.2),
                )
        self._stop_attempts(set(self._running), "shutdown")
        for task in [r.task for r in self._running.values()]:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- one job -------------------------------------------------------------------------

    async def _run_job(
        self, engine: AsyncEngine, attempt_id: uuid.UUID, job: CollectionJob
    ) -> None:
        """Collect every type, then complete the job and end its attempt in one
        transaction; or fail it; or, stopped from outside, record why."""
        run = job.started_at
        assert run is not None
        reporter = Reporter(engine, job.id, run, self._progressed, self.metrics)
        try:
            try:
                await self._collect_all(job, run, reporter)
                async with autocommit(engine) as conn:
                    finished = await attempts.complete(conn, job.id, run, attempt_id)
                if finished is None:  # not this run's any more: the service says why
                    async with session_scope(create_sessionmaker(engine)) as session:
                        await jobs.complete_job(session, job.id, run_started_at=run)
                    raise AssertionError("complete_job completed a job its run could not")
                log.info("job %s: completed", job.id)
                self.metrics.ended("completed")
                self.metrics.estimate_errors(reporter.estimate_errors(finished))
            except _TypeFailed as failed:
                await self._fail(engine, job.id, run, attempt_id, str(failed))
            except jobs.JobNotRunningError:  # cancelled, or run again elsewhere
                async with autocommit(engine) as conn:
                    await self._ended_from_outside(conn, attempt_id, job.id)
            except asyncio.CancelledError:
                reason = self._running[attempt_id].reason if attempt_id in self._running else None
                if reason == "cut off":
                    return  # the database is out of reach: the rescue ends this attempt
                if reason is not None and reason.startswith("stuck:fail:"):
                    silent = reason.rsplit(":", 1)[1]
                    why = f"no progress for {silent}s while its worker was alive"
                    await self._fail(engine, job.id, run, attempt_id, why)
                    return
                async with autocommit(engine) as conn:
                    if reason == "shutdown" or (reason or "").startswith("stuck:requeue"):
                        await attempts.release(conn, job.id, run, attempt_id)
                        self.metrics.ended("requeued")
                    else:  # cancelled, or superseded: the job says how this attempt ended
                        await self._ended_from_outside(conn, attempt_id, job.id)
        except DATABASE_ERRORS as exc:  # the attempt stays live: the rescue takes it over
            log.warning("job %s: could not record its end (%s)", job.id, first_line(exc))

    async def _ended_from_outside(
        self, conn: AsyncConnection, attempt_id: uuid.UUID, job_id: uuid.UUID
    ) -> None:
        outcome = await attempts.end_if_job_ended(conn, attempt_id, job_id)
        if outcome == "cancelled":  # an end by another process is counted there
            self.metrics.ended(outcome)

    async def _fail(
        self, engine: AsyncEngine, job_id: uuid.UUID, run: datetime, attempt_id: uuid.UUID, why: str
    ) -> None:
        try:
            async with session_scope(create_sessionmaker(engine)) as session:
                await jobs.fail_job(session, job_id, why, run_started_at=run)
                await attempts.end_attempt(session, attempt_id, "failed")
        except jobs.JobNotRunningError:
            return
        self.metrics.ended("failed")
        log.warning("job %s failed: %s", job_id, why)

    async def _collect_all(self, job: CollectionJob, run: datetime, reporter: Reporter) -> None:
        bound = asyncio.Semaphore(self.settings.type_concurrency)
        progress = job.progress or {}
        unfinished = set(job.collection_types)

        async def one(collection_type: str) -> None:
            ctx = CollectorContext(
                job, collection_type, float(progress.get(collection_type, 0.0)), run, reporter
            )
            async with bound:
                began = time.perf_counter()
                try:
                    await self._with_retries(ctx)
                finally:
                    self.metrics.collected(collection_type, time.perf_counter() - began)
                unfinished.discard(collection_type)
                if unfinished:  # the last type's 100 comes with the job's completion
                    await reporter.report(collection_type, 100.0)

        try:
            async with asyncio.TaskGroup() as group:
                for collection_type in job.collection_types:
                    group.create_task(one(collection_type))
        except BaseExceptionGroup as failed:  # the first type that failed says why
            for kind in (jobs.JobNotRunningError, _TypeFailed):
                for exc in failed.exceptions:
                    if isinstance(exc, kind):
                        raise exc from None
            raise

    async def _with_retries(self, ctx: CollectorContext) -> None:
        s = self.settings
        collector = self.collectors[ctx.collection_type]
        for attempt in range(s.retries + 1):
            try:
                await collector(ctx)
                return
            except FinalError as exc:
                raise _TypeFailed(ctx.collection_type, exc) from exc
            except (jobs.JobNotRunningError, asyncio.CancelledError):
                raise
            except Exception as exc:  # a collector's own error: retried, then fatal
                if attempt == s.retries:
                    raise _TypeFailed(ctx.collection_type, exc) from exc
                delay = s.retry_backoff * 2**attempt * random.uniform(0.5, 1.5)
                log.info(
                    "%s of job %s: %s; retrying in %.1fs",
                    ctx.collection_type,
                    ctx.job.id,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
