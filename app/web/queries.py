"""What the API reads. Reads only: every write goes through `app.services.collection_jobs`,
the one owner of a job's state."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text, tuple_, union_all
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models import CollectionJobAttempt, CollectionWorker, JobStatus
from app.services import collection_jobs as jobs
from app.services.collection_jobs import JobSelection
from app.services.collection_jobs.common import JOBS
from app.web import cursors
from app.web.access import Access
from app.web.problems import ProblemError
from app.web.schemas import (
    Attempt,
    FinishedInMinute,
    JobDetail,
    JobPage,
    JobState,
    LogItem,
    LogPage,
    QueueState,
    WorkerState,
)

_COLUMNS = tuple(JOBS.c)
ACTIVE = (JobStatus.PENDING.value, JobStatus.RUNNING.value)


def _states(rows: Sequence[Any]) -> list[JobState]:
    return [JobState.of(dict(row._mapping)) for row in rows]


async def job_states(
    db: AsyncConnection | AsyncSession, ids: Sequence[uuid.UUID]
) -> list[JobState]:
    """The current state of each job of `ids` that exists, in one statement."""
    if not ids:
        return []
    rows = await db.execute(select(*_COLUMNS).where(JOBS.c.id.in_(list(ids))))
    return _states(rows.all())


async def active_states(
    db: AsyncConnection | AsyncSession, selection: JobSelection, limit: int
) -> list[JobState]:
    """Pending and running jobs of `selection`, newest first, at most `limit`."""
    where = [*selection.conditions(), JOBS.c.status.in_(ACTIVE)]
    statement = (
        select(*_COLUMNS)
        .where(*where)
        .order_by(JOBS.c.created_at.desc(), JOBS.c.id.desc())
        .limit(limit)
    )
    return _states((await db.execute(statement)).all())


async def changed_states(
    db: AsyncConnection | AsyncSession,
    ids: Collection[uuid.UUID],
    since: datetime,
    *,
    running: bool,
    pending: bool,
) -> list[JobState]:
    """In one statement: the jobs of `ids`, and the running (and, with `pending`, the
    pending) jobs changed after `since`. What one round of live states reads for every
    client of a process; each part is an index scan (the primary key, the status index)."""
    parts = []
    if ids:
        parts.append(select(*_COLUMNS).where(JOBS.c.id.in_(list(ids))))
    for status, wanted in ((JobStatus.RUNNING, running), (JobStatus.PENDING, pending)):
        if wanted:
            parts.append(
                select(*_COLUMNS).where(JOBS.c.status == status, JOBS.c.updated_at > since)
            )
    if not parts:
        return []
    statement = parts[0] if len(parts) == 1 else union_all(*parts)
    unique = {row.id: row for row in (await db.execute(statement)).all()}
    return _states(list(unique.values()))


async def database_clock(db: AsyncConnection | AsyncSession) -> datetime:
    now = (await db.execute(text("SELECT clock_timestamp()"))).scalar_one()
    assert isinstance(now, datetime)
    return now


def scoped(selection: JobSelection, access: Access) -> JobSelection:
    """`selection` limited to what `access` sees; asking for another analyst's jobs is 403."""
    if access.analyst_id is None:
        return selection
    asked = selection.analyst_id
    if asked is not None and str(asked) != str(access.analyst_id):
        raise ProblemError(403, "Forbidden", "this caller sees its own jobs only")
    return JobSelection(
        analyst_id=access.analyst_id,
        statuses=selection.statuses,
        collection_type=selection.collection_type,
        created_after=selection.created_after,
        created_before=selection.created_before,
    )


async def list_jobs(
    session: AsyncSession, selection: JobSelection, limit: int, cursor: str | None
) -> JobPage:
    """Newest first, keyset-paged on (created_at, id): each page one index range scan,
    however deep (`idx_collection_jobs_created_at_id` and the analyst's)."""
    where = selection.conditions()
    listing = cursors.fingerprint(
        "jobs",
        str(selection.analyst_id or ""),
        sorted(str(s) for s in selection.statuses or ()),
        str(selection.collection_type or ""),
        str(selection.created_after or ""),
        str(selection.created_before or ""),
        limit,
    )
    if cursor is not None:
        position = cursors.decode(cursor, listing)
        where.append(tuple_(JOBS.c.created_at, JOBS.c.id) < tuple_(*position))
    statement = (
        select(*_COLUMNS)
        .where(*where)
        .order_by(JOBS.c.created_at.desc(), JOBS.c.id.desc())
        .limit(limit + 1)
    )
    rows = (await session.execute(statement)).all()
    items = _states(rows[:limit])
    following = None
    if len(rows) > limit:
        last = items[-1]
        following = cursors.encode(last.created_at, last.id, listing)
    return JobPage(items=items, next_cursor=following)


_ATTEMPTS = (
    select(
        CollectionJobAttempt.id,
        CollectionJobAttempt.worker_id,
        CollectionWorker.name.label("worker_name"),
        CollectionJobAttempt.run_started_at.label("started_at"),
        CollectionJobAttempt.heartbeat_at,
        CollectionJobAttempt.ended_at,
        CollectionJobAttempt.outcome,
    )
    .join(CollectionWorker, CollectionWorker.id == CollectionJobAttempt.worker_id)
    .order_by(CollectionJobAttempt.run_started_at.desc())
)


async def job_detail(session: AsyncSession, job_id: uuid.UUID, access: Access) -> JobDetail:
    """The job with its attempts; 404 when it does not exist or `access` does not see it."""
    state = await visible_job(session, job_id, access)
    rows = await session.execute(_ATTEMPTS.where(CollectionJobAttempt.collection_job_id == job_id))
    attempts = [Attempt.model_validate(dict(row._mapping)) for row in rows]
    return JobDetail(**state.model_dump(), attempts=attempts)


async def visible_job(session: AsyncSession, job_id: uuid.UUID, access: Access) -> JobState:
    """The job's state; 404 when it does not exist or `access` does not see it."""
    found = await job_states(session, [job_id])
    if not found or not access.sees(found[0].analyst_id):
        raise ProblemError(404, "Not found", f"collection job {job_id} does not exist")
    return found[0]


async def job_logs(
    session: AsyncSession, job_id: uuid.UUID, limit: int, cursor: str | None
) -> LogPage:
    """A page of the job's logs, oldest first; `cursor` from the page before (its own
    listing: this job and page size)."""
    listing = cursors.fingerprint("logs", str(job_id), limit)
    after = None
    if cursor is not None:
        created_at, log_id = cursors.decode(cursor, listing)
        after = jobs.Cursor(created_at, log_id)
    page = await jobs.list_job_logs(session, job_id, limit=limit, after=after)
    following = None
    if page.next_cursor is not None:
        following = cursors.encode(page.next_cursor.created_at, page.next_cursor.id, listing)
    return LogPage(items=[LogItem.model_validate(log) for log in page.items], next_cursor=following)


_WORKERS = text(
    """
SELECT w.id, w.name, w.started_at, w.heartbeat_at,
       CAST(EXTRACT(epoch FROM clock_timestamp() - w.heartbeat_at) AS float8) AS age,
       COALESCE(array_agg(a.collection_job_id) FILTER (WHERE a.id IS NOT NULL), '{}') AS jobs
FROM collection_workers w
LEFT JOIN collection_job_attempts a ON a.worker_id = w.id AND a.ended_at IS NULL
WHERE w.stopped_at IS NULL
GROUP BY w.id
ORDER BY w.started_at, w.id
"""
)


async def workers(session: AsyncSession) -> list[WorkerState]:
    """Workers not stopped, with their heartbeat's age (a dead one's keeps growing) and
    the jobs of their live attempts."""
    rows = await session.execute(_WORKERS)
    return [
        WorkerState(
            id=r.id,
            name=r.name,
            started_at=r.started_at,
            heartbeat_at=r.heartbeat_at,
            heartbeat_age_seconds=max(0.0, r.age),
            running_jobs=list(r.jobs),
        )
        for r in rows
    ]


_QUEUE = text(
    """
SELECT (SELECT json_object_agg(status, n) FROM (
            SELECT status, count(*) AS n FROM collection_jobs GROUP BY status) AS c) AS counts,
       (SELECT CAST(EXTRACT(epoch FROM clock_timestamp() - min(updated_at)) AS float8)
        FROM collection_jobs WHERE status = 'pending') AS oldest,
       date_trunc('minute', clock_timestamp()) AS minute
"""
)
_FINISHED = text(
    """
SELECT date_trunc('minute', completed_at) AS minute,
       count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled
FROM collection_jobs
WHERE completed_at >= date_trunc('minute', clock_timestamp()) - interval '59 minutes'
GROUP BY 1
"""
)


async def queue(session: AsyncSession) -> QueueState:
    """Counts by status, how long the oldest pending job has waited (since it became
    pending), and the finishes of each of the last 60 minutes."""
    counts_row = (await session.execute(_QUEUE)).one()
    counted = counts_row.counts or {}
    counts = {s: int(counted.get(s.value, 0)) for s in JobStatus}
    by_minute = {r.minute: r for r in await session.execute(_FINISHED)}
    minutes = [counts_row.minute - (59 - i) * timedelta(minutes=1) for i in range(60)]
    finished = [
        FinishedInMinute(
            minute=m,
            completed=by_minute[m].completed if m in by_minute else 0,
            failed=by_minute[m].failed if m in by_minute else 0,
            cancelled=by_minute[m].cancelled if m in by_minute else 0,
        )
        for m in minutes
    ]
    return QueueState(
        counts=counts, oldest_pending_wait_seconds=counts_row.oldest, finished_per_minute=finished
    )
