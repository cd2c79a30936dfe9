"""A worker's statements: registering, claiming a job with its attempt, heartbeats, the
end of a run (completed, failed, handed back, stopped from outside), and the rescue of
runs whose worker is gone.

Each is one statement, written once in SQL and sent through the driver where the caller
gives a connection in autocommit mode (`common.fetch`): no SQLAlchemy compilation on the
hot path, and no named prepared statement when the engine keeps none (PgBouncer). Every
statement that ends a run ends the job's move and the attempt together, and locks the job
row before the attempt row, as the operator's actions do (`lifecycle`): no deadlock
between them, and a job is never running without its live attempt nor done with one.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AttemptOutcome, CollectionJob, CollectionType, JobStatus
from app.services.collection_jobs import inputs as check
from app.services.collection_jobs.common import (
    JOB_COLUMNS,
    JOB_STATE,
    Executor,
    Statement,
    driver_of,
    fetch,
    job_from_row,
    statement,
)
from app.services.collection_jobs.errors import JobNotFoundError, not_this_run
from app.services.collection_jobs.lifecycle import cut_error_message, refuse_move
from app.services.collection_jobs.notify import ATTEMPT_STOPPED, JOB_CHANGED, JOB_CREATED

_CHANGED = f"pg_notify('{JOB_CHANGED}', CAST(job.id AS text))"
"""Told to whoever shows jobs live, by the statements here that are not the hot path:
claims and completions are not (a notification serializes commits on the server's one
notification queue); `app.web` reads the running jobs that changed instead."""


@dataclass(frozen=True)
class Run:
    """One run of a job: what every write of it is fenced to."""

    job_id: uuid.UUID
    started_at: datetime
    """The job's `started_at` at the claim (the attempt's `run_started_at`)."""
    attempt_id: uuid.UUID


@dataclass(frozen=True)
class Claimed:
    attempt_id: uuid.UUID
    job: CollectionJob
    waited: float
    """Seconds from the job becoming pending (created, handed back, rescued) to this claim."""

    @property
    def run(self) -> Run:
        assert self.job.started_at is not None
        return Run(self.job.id, self.job.started_at, self.attempt_id)


_REGISTER = statement("INSERT INTO collection_workers (name) VALUES (:name) RETURNING id")
_STOPPED = statement("UPDATE collection_workers SET stopped_at = now() WHERE id = :id")


def _claim(picked: str) -> Statement:
    """The claim: the `picked` pending jobs made running with their attempts, in one
    statement that returns the jobs as they are now: one round trip a pickup."""
    return statement(
        f"""
WITH picked AS ({picked}
), job AS (
    UPDATE collection_jobs SET status = 'running', started_at = clock_timestamp(),
           estimated_completion_time = NULL, updated_at = statement_timestamp()
    FROM picked
    -- By the address the pick locked: a TID scan whatever the statistics say (expecting
    -- one pending row, the planner otherwise scans every pending job to find these).
    WHERE collection_jobs.ctid = picked.address AND collection_jobs.id = picked.id
      AND collection_jobs.status = 'pending'
    RETURNING collection_jobs.*, picked.pending_since
), attempt AS (
    INSERT INTO collection_job_attempts (collection_job_id, worker_id, run_started_at)
    SELECT id, :worker, started_at FROM job
    RETURNING id, collection_job_id
)
SELECT {", ".join(f"job.{name}" for name in JOB_COLUMNS)}, attempt.id AS attempt_id,
       CAST(EXTRACT(epoch FROM job.started_at - job.pending_since) AS float8) AS waited
FROM job JOIN attempt ON attempt.collection_job_id = job.id
ORDER BY job.created_at, job.id
""",
    )


_CLAIM_OLDEST = _claim(
    """
    SELECT id, ctid AS address, updated_at AS pending_since FROM collection_jobs
    WHERE status = 'pending' AND collection_types <@ CAST(:types AS text[])
    ORDER BY created_at, id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED""",
)
_CLAIM_ONE = _claim(
    """
    SELECT id, ctid AS address, updated_at AS pending_since FROM collection_jobs
    WHERE id = :job AND status = 'pending'
    FOR UPDATE""",
)

_HEARTBEAT = statement(
    """
WITH worker AS (
    UPDATE collection_workers SET heartbeat_at = now() WHERE id = :worker RETURNING id
)
UPDATE collection_job_attempts a SET heartbeat_at = now()
FROM collection_jobs j
WHERE a.id = ANY(CAST(:attempts AS uuid[])) AND a.ended_at IS NULL
  AND j.id = a.collection_job_id AND j.status = 'running' AND j.started_at = a.run_started_at
RETURNING a.id
""",
)


def _end_run(
    outcome: AttemptOutcome, job_set: str, returning: str, *, tell: bool = True
) -> Statement:
    """Move the run's job (fenced to the run) and end its attempt, in one statement;
    `JOB_CHANGED` told unless it is the hot path (`tell=False`)."""
    told = f", {_CHANGED}" if tell else ""
    return statement(
        f"""
WITH job AS (
    UPDATE collection_jobs SET {job_set}, updated_at = statement_timestamp()
    WHERE id = :job AND status = 'running' AND started_at = :run
    RETURNING id, completed_at
), ended AS (
    UPDATE collection_job_attempts SET ended_at = now(), outcome = '{outcome.value}'
    WHERE id = :attempt AND ended_at IS NULL AND EXISTS (SELECT FROM job)
)
SELECT {returning}{told} FROM job
""",
    )


_COMPLETE = _end_run(
    AttemptOutcome.COMPLETED,
    """status = 'completed', completed_at = statement_timestamp(),
       progress = (SELECT jsonb_object_agg(t, 100) FROM unnest(collection_types) AS t),
       overall_progress = '100.0', estimated_completion_time = NULL""",
    "completed_at",
    tell=False,
)
_COMPLETE_MANY = statement(
    """
WITH runs AS (
    SELECT * FROM unnest(CAST(:jobs AS uuid[]), CAST(:runs AS timestamptz[]),
                         CAST(:attempts AS uuid[])) AS r(job, run, attempt)
), job AS (
    UPDATE collection_jobs j SET status = 'completed', completed_at = statement_timestamp(),
           progress = (SELECT jsonb_object_agg(t, 100) FROM unnest(j.collection_types) AS t),
           overall_progress = '100.0', estimated_completion_time = NULL,
           updated_at = statement_timestamp()
    FROM runs
    WHERE j.id = runs.job AND j.status = 'running' AND j.started_at = runs.run
    RETURNING j.id, j.completed_at, runs.attempt
), ended AS (
    UPDATE collection_job_attempts a SET ended_at = now(), outcome = 'completed'
    FROM job WHERE a.id = job.attempt AND a.ended_at IS NULL
)
SELECT id, completed_at FROM job
""",
)
_FAIL = _end_run(
    AttemptOutcome.FAILED,
    """status = 'failed', completed_at = statement_timestamp(),
       error_message = :message, estimated_completion_time = NULL""",
    "completed_at",
)
_RELEASE = _end_run(
    AttemptOutcome.RELEASED,
    "status = 'pending', started_at = NULL, estimated_completion_time = NULL",
    f"pg_notify('{JOB_CREATED}', CAST(id AS text))",
)

_RELEASE_ORPHANS = statement(
    f"""
WITH orphan AS (
    SELECT a.id, a.collection_job_id, a.run_started_at FROM collection_job_attempts a
    JOIN collection_jobs j ON j.id = a.collection_job_id
    WHERE a.worker_id = :worker AND a.ended_at IS NULL
      AND a.id <> ALL(CAST(:held AS uuid[]))
      AND a.heartbeat_at < now() - make_interval(secs => :settled)
    FOR UPDATE OF j
), job AS (
    UPDATE collection_jobs j SET status = 'pending', started_at = NULL,
           estimated_completion_time = NULL, updated_at = statement_timestamp()
    FROM orphan
    WHERE j.id = orphan.collection_job_id AND j.status = 'running'
      AND j.started_at = orphan.run_started_at
    RETURNING j.id
), ended AS (
    UPDATE collection_job_attempts a SET ended_at = now(), outcome = 'released'
    FROM orphan WHERE a.id = orphan.id AND a.ended_at IS NULL
)
SELECT id, pg_notify('{JOB_CREATED}', CAST(id AS text)), {_CHANGED} FROM job
""",
)

_STOPPED_FROM_OUTSIDE = statement(
    """
WITH ended AS (
    UPDATE collection_job_attempts a SET ended_at = now(), outcome = j.status
    FROM collection_jobs j
    WHERE a.id = :attempt AND a.ended_at IS NULL AND j.id = a.collection_job_id
      AND j.status IN ('completed', 'failed', 'cancelled')
    RETURNING a.outcome
)
SELECT outcome FROM ended
UNION ALL
SELECT outcome FROM collection_job_attempts WHERE id = :attempt AND ended_at IS NOT NULL
""",
)

_RESCUE = statement(
    f"""
WITH lost AS (
    SELECT a.id FROM collection_job_attempts a
    JOIN collection_jobs j ON j.id = a.collection_job_id
    WHERE a.ended_at IS NULL AND a.heartbeat_at < now() - make_interval(secs => :timeout)
    FOR UPDATE OF j SKIP LOCKED
), ended AS (
    UPDATE collection_job_attempts a SET ended_at = now(), outcome = 'lost'
    FROM lost
    WHERE a.id = lost.id AND a.ended_at IS NULL
      AND a.heartbeat_at < now() - make_interval(secs => :timeout)
    RETURNING a.collection_job_id, a.run_started_at, a.heartbeat_at
), counted AS (
    SELECT ended.*, 1 + (SELECT count(*) FROM collection_job_attempts p
                         WHERE p.collection_job_id = ended.collection_job_id
                           AND p.outcome = 'lost') AS n
    FROM ended
), job AS (
    UPDATE collection_jobs j SET
        status = CASE WHEN c.n >= :max_lost THEN 'failed' ELSE 'pending' END,
        started_at = CASE WHEN c.n >= :max_lost THEN j.started_at END,
        completed_at = CASE WHEN c.n >= :max_lost THEN statement_timestamp() END,
        error_message = CASE WHEN c.n >= :max_lost
            THEN 'the worker stopped answering ' || c.n || ' times; last seen at '
                 || to_char(c.heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
                 || ' UTC' END,
        estimated_completion_time = NULL,
        updated_at = statement_timestamp()
    FROM counted c
    WHERE j.id = c.collection_job_id AND j.status = 'running'
      AND j.started_at = c.run_started_at
    RETURNING j.id, j.status
)
SELECT id, CASE WHEN status = 'pending' THEN pg_notify('{JOB_CREATED}', CAST(id AS text)) END,
       {_CHANGED}
FROM job
""",
)

_QUEUE = statement(
    """
SELECT (SELECT count(*) FROM collection_jobs WHERE status = 'pending'),
       (SELECT CAST(EXTRACT(epoch FROM now() - min(heartbeat_at)) AS float8)
        FROM collection_job_attempts WHERE ended_at IS NULL)
""",
)

_ALL_TYPES = [t.value for t in CollectionType]


async def register_worker(db: Executor, name: str) -> uuid.UUID:
    """A row for this worker process; its id goes with every claim and heartbeat."""
    [(worker_id,)] = await fetch(db, _REGISTER, {"name": name[:200]})
    assert isinstance(worker_id, uuid.UUID)
    return worker_id


async def worker_stopped(db: Executor, worker_id: uuid.UUID) -> None:
    await fetch(db, _STOPPED, {"id": worker_id})


async def claim_jobs(
    db: Executor, worker_id: uuid.UUID, types: Sequence[str], limit: int
) -> list[Claimed]:
    """Up to `limit` of the oldest pending jobs whose every type is in `types`, made
    running, each with its new attempt; jobs other claimers hold are skipped."""
    params = {"types": list(types), "worker": worker_id, "limit": limit}
    return await _claimed(db, await _claim_rows(db, _CLAIM_OLDEST, params))


async def claim_next_job(db: Executor, *, worker_id: uuid.UUID) -> Claimed | None:
    """The oldest pending job, made running with an attempt of `worker_id`'s (see
    `register_worker`); None if none. The attempt must be kept alive by `heartbeat`: one
    silent for the rescue timeout is rescued, as any worker's."""
    claimed = await claim_jobs(db, worker_id, _ALL_TYPES, 1)
    return claimed[0] if claimed else None


async def start_job(db: Executor, job_id: uuid.UUID | str, *, worker_id: uuid.UUID) -> Claimed:
    """pending -> running for this job, with an attempt of `worker_id`'s (see
    `claim_next_job`)."""
    job_id = check.identifier(job_id, "job_id")
    rows = await fetch(db, _CLAIM_ONE, {"job": job_id, "worker": worker_id})
    claimed = await _claimed(db, rows)
    if claimed:
        return claimed[0]
    raise await refuse_move(db, job_id, JobStatus.RUNNING)


_CLAIM_SETTINGS = {"enable_sort": "off", "jit": "off"}
"""The claim's planner settings, for its transaction alone. `enable_sort`: the pending jobs
are read in the order of their partial index, never gathered and sorted. Statistics taken
while few jobs were pending (a quiet queue, then a burst) make the planner expect one
pending row and sort them all instead, on every claim: 4.8 ms instead of 0.05 ms to pick 8
of 8,000 pending jobs, worse as the backlog grows (tests/test_query_plans.py). The index
order is never the worse plan: the index holds only pending jobs, in the order claimed.
`jit`: before PostgreSQL 18 a plan with a disabled node costs billions, which would have
it compiled (200 ms a claim on PostgreSQL 15)."""
_BEGIN_CLAIM = "BEGIN; " + " ".join(f"SET LOCAL {k} = {v};" for k, v in _CLAIM_SETTINGS.items())
_SET_CLAIM = statement(
    "SELECT "
    + ", ".join(f"current_setting('{k}')" for k in _CLAIM_SETTINGS)
    + ", "
    + ", ".join(f"set_config('{k}', '{v}', true)" for k, v in _CLAIM_SETTINGS.items())
)
_PUT_BACK = statement(
    "SELECT " + ", ".join(f"set_config('{k}', :{k}, true)" for k in _CLAIM_SETTINGS)
)


async def _claim_rows(db: Executor, st: Statement, params: dict[str, Any]) -> Sequence[Any]:
    """The claim's rows, in a transaction of its own with `_CLAIM_SETTINGS`; in the
    caller's transaction (a session), with the settings put back afterwards."""
    driver = await driver_of(db)
    if driver is None:
        [row] = await fetch(db, _SET_CLAIM, {})
        rows = await fetch(db, st, params)
        # Put back after a claim that worked; one that failed leaves the transaction to be
        # rolled back, which puts the settings back with it.
        await fetch(db, _PUT_BACK, dict(zip(_CLAIM_SETTINGS, row, strict=False)))
        return rows
    await driver.execute(_BEGIN_CLAIM)  # one round trip, no parameters
    try:
        rows = await fetch(db, st, params)
        await driver.execute("COMMIT")
    except BaseException:
        # A connection lost meanwhile is the pool's again (asking it anything raises): the
        # caller is told of the loss, not of this clean-up.
        with contextlib.suppress(Exception):
            if driver.is_in_transaction():
                await driver.execute("ROLLBACK")
        raise
    return rows


async def _claimed(db: Executor, rows: Sequence[Any]) -> list[Claimed]:
    """The claimed jobs of a claim's `rows`."""
    width = len(JOB_COLUMNS)
    if isinstance(db, AsyncSession) and rows:  # the session's own objects, as it expects
        found = await db.scalars(
            select(CollectionJob)
            .where(CollectionJob.id.in_([row[0] for row in rows]))
            .execution_options(populate_existing=True)
        )
        by_id = {job.id: job for job in found}
        return [Claimed(row[width], by_id[row[0]], row[-1]) for row in rows]
    return [Claimed(row[width], job_from_row(row), row[-1]) for row in rows]


async def heartbeat(
    db: Executor,
    worker_id: uuid.UUID,
    attempts: Sequence[uuid.UUID],
) -> set[uuid.UUID]:
    """Beat for the worker and its attempts; returns the attempts still current (a missing
    one was rescued, cancelled, requeued or finished elsewhere: its collectors must stop)."""
    rows = await fetch(db, _HEARTBEAT, {"worker": worker_id, "attempts": list(attempts)})
    return {row[0] for row in rows}


async def complete_run(db: Executor, run: Run) -> datetime:
    """Complete the job (every type 100) and end its attempt `completed`: one round trip.
    Its `completed_at`; `JobNotRunningError` when the run is not the job's any more."""
    rows = await fetch(db, _COMPLETE, _params(run))
    if not rows:
        raise await _not_this_run(db, run, "completion")
    finished = rows[0][0]
    assert isinstance(finished, datetime)
    return finished


async def complete_runs(db: Executor, runs: Sequence[Run]) -> dict[uuid.UUID, datetime]:
    """`complete_run` of several runs in one statement (the worker's ends that come
    together): job id -> `completed_at` of each one completed; a run missing from it was
    not its job's any more (`complete_run` says why)."""
    params = {
        "jobs": [r.job_id for r in runs],
        "runs": [r.started_at for r in runs],
        "attempts": [r.attempt_id for r in runs],
    }
    rows = await fetch(db, _COMPLETE_MANY, params)
    return {row[0]: row[1] for row in rows}


async def fail_run(db: Executor, run: Run, error_message: str) -> None:
    """Fail the job with `error_message` (cut to the column) and end its attempt
    `failed`; `JobNotRunningError` when the run is not the job's any more."""
    params = {**_params(run), "message": cut_error_message(error_message)}
    if not await fetch(db, _FAIL, params):
        raise await _not_this_run(db, run, "failure")


async def release_run(db: Executor, run: Run) -> bool:
    """Hand the job back: pending, its progress kept for the next attempt, this attempt
    `released` (not counted as lost), waiting workers notified. False when the run was
    no longer the job's (cancelled, rescued, ...): nothing changed."""
    return bool(await fetch(db, _RELEASE, _params(run)))


async def release_orphans(
    db: Executor, worker_id: uuid.UUID, held: Sequence[uuid.UUID], settled: float
) -> list[uuid.UUID]:
    """Hand back, with their progress, the live attempts of `worker_id` other than those
    it `held` and not heartbeaten for `settled` seconds: runs it claimed without ever
    hearing so (a claim whose reply an outage swallowed; one still on its way is younger).
    Their jobs go back to the queue now, `released`, instead of waiting for the rescue to
    call them lost. Returns the jobs handed back."""
    params = {"worker": worker_id, "held": list(held), "settled": float(settled)}
    rows = await fetch(db, _RELEASE_ORPHANS, params)
    return [row[0] for row in rows]


async def end_stopped_run(db: Executor, run: Run) -> AttemptOutcome | None:
    """How an attempt stopped from outside ended: as the operator or the rescue ended it,
    or, still live, as its job ended (cancelled, failed, completed), now recorded. None
    while its job is still this run's: nothing ended it."""
    rows = await fetch(db, _STOPPED_FROM_OUTSIDE, {"attempt": run.attempt_id})
    return AttemptOutcome(rows[0][0]) if rows else None


async def rescue(db: Executor, lost_after: float, max_lost: int) -> list[uuid.UUID]:
    """End as `lost` every attempt without a heartbeat for `lost_after` seconds, and
    requeue its job with its progress (waiting workers notified), or fail it at the
    `max_lost`-th loss. Safe beside other rescuers and operators: a job another holds is
    left to the next round. Returns the jobs rescued."""
    rows = await fetch(db, _RESCUE, {"timeout": float(lost_after), "max_lost": max_lost})
    return [row[0] for row in rows]


async def queue_state(db: Executor) -> tuple[int, float | None]:
    """Pending jobs, and the age (s) of the oldest heartbeat of a live attempt, if any."""
    [(pending, oldest)] = await fetch(db, _QUEUE, {})
    return int(pending), oldest


def _params(run: Run) -> dict[str, Any]:
    return {"job": run.job_id, "run": run.started_at, "attempt": run.attempt_id}


async def _not_this_run(db: Executor, run: Run, what: str) -> Exception:
    rows = await fetch(db, JOB_STATE, {"job": run.job_id})
    if not rows:
        return JobNotFoundError(run.job_id)
    status, _types, started_at = rows[0]
    return not_this_run(run.job_id, JobStatus(status), started_at, run.started_at, what)


__all__ = [
    "ATTEMPT_STOPPED",
    "Claimed",
    "Run",
    "claim_jobs",
    "claim_next_job",
    "complete_run",
    "complete_runs",
    "end_stopped_run",
    "fail_run",
    "heartbeat",
    "queue_state",
    "register_worker",
    "release_orphans",
    "release_run",
    "rescue",
    "start_job",
    "worker_stopped",
]
