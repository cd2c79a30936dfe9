"""Running one claimed job: its types' collectors (retried for their own errors), then its
end, each write through the service and fenced to the run.

Whose fault an error is decides what happens (`app.db.faults`):
- the database's (a lost connection, a restart, a failover, a timeout): the write waits for
  the database and is sent again; the collector never sees it, its retries are untouched,
  and the job is never failed for it. Only the heartbeat thread decides that this worker
  is cut off (then this task is cancelled, and the job handed back when the database
  answers again, before the rescue could take it);
- the collector's own exception: retried (`retries`), then the job fails `<type>: <cause>`;
- ours (a constraint violation, a statement error): one loud line naming the statement,
  and the job fails with that message, never retried as if it were an outage.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

from app.db.errors import first_line
from app.db.faults import describe, is_outage
from app.models import AttemptOutcome, CollectionJob
from app.services import collection_jobs as jobs
from app.worker.collectors import CollectorContext, FinalError
from app.worker.reporting import Reporter

if TYPE_CHECKING:
    from app.worker.runtime import Worker

log = logging.getLogger("app.worker.runtime")

T = TypeVar("T")


class StopReason(StrEnum):
    """Why a running job's collectors were stopped before they finished."""

    STOPPED_FROM_OUTSIDE = "stopped from outside"
    """An operator (cancel, requeue, fail) or a rescue ended the attempt; it says how."""
    CUT_OFF = "cut off"
    """No heartbeat for half the rescue timeout: the job is handed back when possible."""
    SHUTDOWN = "shutdown"
    """SIGTERM and the grace period passed: handed back with its progress."""
    STUCK_FAIL = "stuck, failing it"
    STUCK_REQUEUE = "stuck, handing it back"


class StuckAction(StrEnum):
    """What a worker does with a job of its own that makes no progress (`stuck_after`)."""

    LOG = "log"
    FAIL = "fail"
    REQUEUE = "requeue"


class StatementBug(Exception):
    """A statement of ours failed in a way no retry mends: a bug, never an outage."""

    def __init__(self, what: str, cause: BaseException) -> None:
        super().__init__(f"bug: could not {what}: {describe(cause)}")


class GaveUp(Exception):
    """The database did not answer for the rescue timeout: the rescue owns the job now."""


class _TypeFailed(Exception):
    def __init__(self, collection_type: str, cause: BaseException) -> None:
        super().__init__(f"{collection_type}: {first_line(cause)}")


class JobRun:
    """One job of `worker`, in one attempt (`claimed`); `await run()` until it has ended."""

    def __init__(self, worker: Worker, claimed: jobs.Claimed) -> None:
        self.worker = worker
        self.job: CollectionJob = claimed.job
        self.run_ = claimed.run
        self.reason: StopReason | None = None
        self.silent_for = 0.0
        """With a stuck reason: the seconds without progress."""
        self.reporter = Reporter(self, self.run_, worker._progressed, worker.metrics)

    def stop(self, reason: StopReason) -> bool:
        """Record why it is being stopped; False if it already was."""
        if self.reason is not None:
            return False
        self.reason = reason
        return True

    async def persist(self, what: str, write: Callable[[], Awaitable[T]]) -> T:
        """`write()` until it lands. An outage is waited out, with one line when it starts,
        for as long as it lasts (every write is fenced to the run: once the rescue took the
        job, it lands nowhere); only a worker shutting down gives up, past the rescue
        timeout without a heartbeat (`GaveUp`: the rescue owns the job). The service's
        refusals (`JobNotRunningError`, a collector's bad value) go to the caller; anything
        else is a bug: `StatementBug`."""
        delay, warned = 0.1, False
        while True:
            try:
                return await write()
            except jobs.CollectionJobError:
                raise
            except Exception as exc:
                if not is_outage(exc):
                    raise StatementBug(what, exc) from exc
                if self.worker.giving_up():
                    raise GaveUp(f"could not {what}: {describe(exc)}") from exc
                if not warned:
                    warned = True
                    log.warning(
                        "job %s: waiting for the database to %s (%s)",
                        self.job.id,
                        what,
                        describe(exc),
                    )
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                # At most a heartbeat apart: when the database answers again, a job handed
                # back lands well before a rescuer (who waits a rescue timeout) may act.
                delay = min(delay * 2, self.worker.settings.heartbeat_seconds)

    async def send(self, what: str, call: Callable[[jobs.Executor], Awaitable[T]]) -> T:
        """`call` on one of the worker's pooled connections, through `persist`."""

        async def once() -> T:
            async with self.worker.connection() as conn:
                return await call(conn)

        return await self.persist(what, once)

    # --- the run -------------------------------------------------------------------------

    async def run(self) -> None:
        """Collect every type, then complete the job and end its attempt in one statement;
        or fail it; or, stopped, record how."""
        try:
            try:
                await self._collect_all()
                finished = await self.persist(
                    "complete the job",
                    lambda: self.worker.completions.complete(self.worker.connection, self.run_),
                )
                if finished is None:  # not this run's any more: the service says why
                    await self.send("complete the job", lambda c: jobs.complete_run(c, self.run_))
                    raise AssertionError("complete_run completed what its batch could not")
                log.info("job %s: completed", self.job.id)
                self.worker.metrics.ended(AttemptOutcome.COMPLETED)
                self.worker.metrics.estimate_errors(self.reporter.estimate_errors(finished))
            except _TypeFailed as failed:
                await self._fail(str(failed))
            except StatementBug as bug:
                log.error("job %s: %s", self.job.id, bug)
                await self._fail(str(bug))
            except jobs.JobNotRunningError:  # ended from outside: it says how
                await self._stopped_from_outside()
            except asyncio.CancelledError:
                await self._stopped()
        except (GaveUp, jobs.JobNotRunningError) as exc:
            log.warning("job %s: left to the rescue (%s)", self.job.id, first_line(exc))
        except StatementBug as bug:
            log.error("job %s: %s; left to the rescue", self.job.id, bug)

    async def _stopped(self) -> None:
        """Cancelled by the worker: end the attempt as its reason says."""
        reason = self.reason
        if reason is StopReason.STUCK_FAIL:
            await self._fail(f"no progress for {self.silent_for:.0f}s while its worker was alive")
        elif reason in (StopReason.SHUTDOWN, StopReason.CUT_OFF, StopReason.STUCK_REQUEUE):
            released = await self.send(
                "hand the job back", lambda c: jobs.release_run(c, self.run_)
            )
            if released:
                log.info("job %s: handed back with its progress (%s)", self.job.id, reason)
                self.worker.metrics.ended(AttemptOutcome.RELEASED)
        else:
            await self._stopped_from_outside()

    async def _stopped_from_outside(self) -> None:
        outcome = await self.send(
            "record how the job ended", lambda c: jobs.end_stopped_run(c, self.run_)
        )
        if outcome is None:
            return
        log.info("job %s: stopped from outside (%s)", self.job.id, outcome)
        if outcome is not AttemptOutcome.LOST:
            self.worker.metrics.ended(outcome)

    async def _fail(self, why: str) -> None:
        try:
            await self.send("fail the job", lambda c: jobs.fail_run(c, self.run_, why))
        except jobs.JobNotRunningError:
            await self._stopped_from_outside()
            return
        self.worker.metrics.ended(AttemptOutcome.FAILED)
        log.warning("job %s failed: %s", self.job.id, why)

    # --- the collectors ------------------------------------------------------------------

    async def _collect_all(self) -> None:
        bound = asyncio.Semaphore(self.worker.settings.type_concurrency)
        progress = self.job.progress or {}
        unfinished = set(self.job.collection_types)

        async def one(collection_type: str) -> None:
            resume = float(progress.get(collection_type, 0.0))
            ctx = CollectorContext(
                self.job, collection_type, resume, self.run_.started_at, self.reporter
            )
            async with bound:
                began = time.perf_counter()
                try:
                    await self._with_retries(ctx)
                finally:
                    self.worker.metrics.collected(collection_type, time.perf_counter() - began)
                unfinished.discard(collection_type)
                if unfinished:  # the last type's 100 comes with the job's completion
                    await self.reporter.report(collection_type, 100.0)

        if len(self.job.collection_types) == 1:  # no group to wait on: it starts at once
            await one(self.job.collection_types[0])
            return
        try:
            async with asyncio.TaskGroup() as group:
                for collection_type in self.job.collection_types:
                    group.create_task(one(collection_type))
        except BaseExceptionGroup as failed:  # the first that says why the job ends
            for kind in (StatementBug, GaveUp, jobs.JobNotRunningError, _TypeFailed):
                for exc in failed.exceptions:
                    if isinstance(exc, kind):
                        raise exc from None
            raise

    async def _with_retries(self, ctx: CollectorContext) -> None:
        s = self.worker.settings
        collector = self.worker.collectors[ctx.collection_type]
        for attempt in range(s.retries + 1):
            try:
                await collector(ctx)
                return
            except FinalError as exc:
                raise _TypeFailed(ctx.collection_type, exc) from exc
            except (jobs.JobNotRunningError, StatementBug, GaveUp, asyncio.CancelledError):
                raise  # not the collector's
            except Exception as exc:  # a collector's own error: retried, then fatal
                if attempt == s.retries:
                    raise _TypeFailed(ctx.collection_type, exc) from exc
                delay = s.retry_backoff * 2**attempt * random.uniform(0.5, 1.5)
                log.info(
                    "%s of job %s: %s; retrying in %.1fs",
                    ctx.collection_type,
                    ctx.job.id,
                    first_line(exc),
                    delay,
                )
                await asyncio.sleep(delay)
