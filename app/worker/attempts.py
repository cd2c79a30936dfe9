"""The runtime's statements: registering a worker, claiming a job with its attempt,
heartbeats, ending attempts, and the rescue of jobs whose worker is gone.

Each is one statement (or one short transaction) whose WHERE states what must hold, so
several worker processes on several machines can run them at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Float, Uuid, column, exists, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models import CollectionJob, CollectionJobAttempt
from app.services import collection_jobs as jobs

RESCUE_LOCK_KEY = 0x636F6C6C_72657363  # "collresc": one rescuer at a time across machines

_REGISTER = text("INSERT INTO collection_workers (name) VALUES (:name) RETURNING id")
_STOPPED = text("UPDATE collection_workers SET stopped_at = now() WHERE id = :id")

_JOB_COLUMNS = CollectionJob.__table__.c
# The oldest pending jobs (up to :limit) whose every type this worker can run, made
# running, with their attempts, in one statement that returns the jobs as they are now: a
# job is never running without its live attempt, and a pickup is one round trip.
_CLAIM = text(
    f"""
WITH picked AS (
    SELECT id, updated_at AS pending_since FROM collection_jobs
    WHERE status = 'pending' AND collection_types <@ CAST(:types AS text[])
    ORDER BY created_at, id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
), job AS (
    UPDATE collection_jobs SET status = 'running', started_at = clock_timestamp(),
           estimated_completion_time = NULL, updated_at = statement_timestamp()
    FROM picked
    WHERE collection_jobs.id = picked.id AND collection_jobs.status = 'pending'
    RETURNING collection_jobs.*, picked.pending_since
), attempt AS (
    INSERT INTO collection_job_attempts (collection_job_id, worker_id, run_started_at)
    SELECT id, :worker, started_at FROM job
    RETURNING id, collection_job_id
)
SELECT {", ".join(f"job.{c.name}" for c in _JOB_COLUMNS)}, attempt.id AS attempt_id,
       CAST(EXTRACT(epoch FROM job.started_at - job.pending_since) AS float8) AS waited
FROM job JOIN attempt ON attempt.collection_job_id = job.id
ORDER BY job.created_at, job.id
"""
).columns(*_JOB_COLUMNS, column("attempt_id", Uuid), column("waited", Float))

_HEARTBEAT = text(
    """
WITH worker AS (
    UPDATE collection_workers SET heartbeat_at = now() WHERE id = :worker RETURNING id
)
UPDATE collection_job_attempts a SET heartbeat_at = now()
FROM collection_jobs j
WHERE a.id = ANY(CAST(:attempts AS uuid[])) AND a.ended_at IS NULL
  AND j.id = a.collection_job_id AND j.status = 'running' AND j.started_at = a.run_started_at
RETURNING a.id
"""
)

_END = text(
    """
UPDATE collection_job_attempts SET ended_at = now(), outcome = :outcome
WHERE id = :attempt AND ended_at IS NULL
"""
)

# Hand a job back (shutdown): pending again with its progress, only while it is this run's.
_RELEASE = text(
    """
UPDATE collection_jobs SET status = 'pending', started_at = NULL,
       estimated_completion_time = NULL, updated_at = statement_timestamp()
WHERE id = :job AND status = 'running' AND started_at = :run
"""
)

_LOST = text(
    """
UPDATE collection_job_attempts SET ended_at = now(), outcome = 'lost'
WHERE ended_at IS NULL AND heartbeat_at < now() - make_interval(secs => :timeout)
RETURNING collection_job_id, run_started_at
"""
)

_REQUEUE_OR_FAIL = text(
    """
UPDATE collection_jobs j SET
    status = CASE WHEN lost.n >= :max_lost THEN 'failed' ELSE 'pending' END,
    started_at = CASE WHEN lost.n >= :max_lost THEN j.started_at END,
    completed_at = CASE WHEN lost.n >= :max_lost THEN now() END,
    error_message = CASE WHEN lost.n >= :max_lost
        THEN 'the worker stopped answering ' || lost.n || ' times; last seen at '
             || to_char(:run AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC' END,
    estimated_completion_time = NULL,
    updated_at = statement_timestamp()
FROM (SELECT count(*) AS n FROM collection_job_attempts
      WHERE collection_job_id = :job AND outcome = 'lost') AS lost
WHERE j.id = :job AND j.status = 'running' AND j.started_at = :run
RETURNING j.status
"""
)


@dataclass(frozen=True)
class Claimed:
    attempt_id: uuid.UUID
    job: CollectionJob
    waited: float
    """Seconds from the job becoming pending (created, handed back, rescued) to this claim."""


async def register_worker(conn: AsyncConnection, name: str) -> uuid.UUID:
    worker_id: uuid.UUID = (await conn.execute(_REGISTER, {"name": name[:200]})).scalar_one()
    return worker_id


async def worker_stopped(conn: AsyncConnection, worker_id: uuid.UUID) -> None:
    await conn.execute(_STOPPED, {"id": worker_id})


async def claim(
    session: AsyncSession, worker_id: uuid.UUID, types: Sequence[str], limit: int
) -> list[Claimed]:
    """Up to `limit` jobs, oldest first, each with its new attempt."""
    params = {"types": list(types), "worker": worker_id, "limit": limit}
    picked = _CLAIM.selected_columns
    statement = select(CollectionJob, picked.attempt_id, picked.waited).from_statement(_CLAIM)
    rows = await session.execute(statement, params)
    return [Claimed(attempt_id, job, waited) for job, attempt_id, waited in rows]


_QUEUE = text(
    """
SELECT (SELECT count(*) FROM collection_jobs WHERE status = 'pending'),
       (SELECT CAST(EXTRACT(epoch FROM now() - min(heartbeat_at)) AS float8)
        FROM collection_job_attempts WHERE ended_at IS NULL)
"""
)


async def queue_state(conn: AsyncConnection) -> tuple[int, float | None]:
    """Pending jobs, and the age (s) of the oldest heartbeat of a live attempt, if any."""
    pending, oldest = (await conn.execute(_QUEUE)).one()
    return int(pending), oldest


async def heartbeat(
    conn: AsyncConnection, worker_id: uuid.UUID, attempts: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Beat for the worker and its attempts; returns the attempts still current (a missing
    one was rescued, cancelled or finished elsewhere: its collectors must stop)."""
    rows = await conn.execute(_HEARTBEAT, {"worker": worker_id, "attempts": list(attempts)})
    return {row[0] for row in rows}


async def complete(
    conn: AsyncConnection, job_id: uuid.UUID, run: datetime, attempt_id: uuid.UUID
) -> datetime | None:
    """Complete the job (the service's `completion`, fenced to the run) and end its
    attempt, in one statement: one round trip. Its `completed_at`, or None when the job
    was not this run's to complete (`complete_job` then says why)."""
    done = jobs.completion(job_id, run_started_at=run).returning(CollectionJob.completed_at)
    completed = done.cte("completed")
    ended = (
        update(CollectionJobAttempt)
        .where(
            CollectionJobAttempt.id == attempt_id,
            CollectionJobAttempt.ended_at.is_(None),
            exists(select(completed.c.completed_at)),
        )
        .values(ended_at=func.now(), outcome="completed")
        .cte("ended")
    )
    statement = select(completed.c.completed_at).add_cte(ended)
    finished: datetime | None = (await conn.execute(statement)).scalar_one_or_none()
    return finished


async def end_attempt(
    db: AsyncConnection | AsyncSession, attempt_id: uuid.UUID, outcome: str
) -> None:
    """Record how an attempt ended; in the same transaction as its job's end, where there
    is one, so a finished job never keeps a live attempt."""
    await db.execute(_END, {"attempt": attempt_id, "outcome": outcome})


async def end_if_job_ended(conn: AsyncConnection, attempt_id: uuid.UUID, job_id: uuid.UUID) -> str:
    """End an attempt stopped from outside as its job ended (cancelled, ...); an attempt of
    a job that runs again elsewhere was already ended by the rescue ("superseded")."""
    outcome = (
        await conn.execute(
            text(
                "UPDATE collection_job_attempts SET ended_at = now(), outcome = j.status "
                "FROM collection_jobs j WHERE collection_job_attempts.id = :attempt "
                "AND ended_at IS NULL AND j.id = :job "
                "AND j.status IN ('completed', 'failed', 'cancelled') "
                "RETURNING outcome"
            ),
            {"attempt": attempt_id, "job": job_id},
        )
    ).scalar_one_or_none()
    return str(outcome or "superseded")


async def release(
    conn: AsyncConnection, job_id: uuid.UUID, run: datetime, attempt_id: uuid.UUID
) -> None:
    """Give a job back on shutdown: pending, progress kept, the attempt `released`."""
    async with conn.begin():
        await conn.execute(_RELEASE, {"job": job_id, "run": run})
        await conn.execute(_END, {"attempt": attempt_id, "outcome": "released"})


async def rescue(conn: AsyncConnection, lost_after: float, max_lost: int) -> list[uuid.UUID]:
    """Requeue (progress kept) the jobs whose attempt stopped heartbeating for `lost_after`
    seconds, or fail those lost `max_lost` times; one rescuer at a time (an advisory lock
    held for the transaction). Returns the jobs rescued."""
    rescued = []
    async with conn.begin():
        locked = (
            await conn.execute(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": RESCUE_LOCK_KEY}
            )
        ).scalar_one()
        if not locked:
            return []
        for job_id, run in (await conn.execute(_LOST, {"timeout": lost_after})).all():
            params = {"job": job_id, "run": run, "max_lost": max_lost}
            if (await conn.execute(_REQUEUE_OR_FAIL, params)).one_or_none() is not None:
                rescued.append(job_id)
    return rescued
