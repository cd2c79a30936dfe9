"""The table of allowed moves, and every move of a job's status that is not a worker's own
run (`runs`): the operators' actions (cancel, requeue, retry, fail) on one job or on every
job a selection matches, and the stalled-job checks. One statement each."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    Text,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    AttemptOutcome,
    CollectionJob,
    CollectionType,
    JobStatus,
)
from app.models.base import TIMESTAMPTZ
from app.models.collection_job import ERROR_MESSAGE_MAX_LENGTH
from app.services.collection_jobs import inputs as check
from app.services.collection_jobs.common import (
    ATTEMPTS,
    JOB_STATE,
    JOBS,
    Executor,
    Statement,
    fetch,
    job_from_row,
    now,
    statement,
)
from app.services.collection_jobs.errors import (
    CollectionJobError,
    InvalidTransitionError,
    JobNotFoundError,
    JobValidationError,
    not_this_run,
)
from app.services.collection_jobs.notify import ATTEMPT_STOPPED, JOB_CHANGED, JOB_CREATED

# --- The table of allowed moves ------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    """One kind of change of a job's status, and what it does to the job's live attempt."""

    sources: frozenset[JobStatus]
    target: JobStatus
    attempt: AttemptOutcome | None
    """How the job's live attempt, if any, ends with it (None: there is none)."""


MOVES: dict[str, Move] = {
    "claim": Move(frozenset({JobStatus.PENDING}), JobStatus.RUNNING, None),
    "complete": Move(frozenset({JobStatus.RUNNING}), JobStatus.COMPLETED, AttemptOutcome.COMPLETED),
    "fail": Move(
        frozenset({JobStatus.PENDING, JobStatus.RUNNING}), JobStatus.FAILED, AttemptOutcome.FAILED
    ),
    "cancel": Move(
        frozenset({JobStatus.PENDING, JobStatus.RUNNING}),
        JobStatus.CANCELLED,
        AttemptOutcome.CANCELLED,
    ),
    "requeue": Move(frozenset({JobStatus.RUNNING}), JobStatus.PENDING, AttemptOutcome.RELEASED),
    "retry": Move(frozenset({JobStatus.FAILED, JobStatus.CANCELLED}), JobStatus.PENDING, None),
    "rescue": Move(frozenset({JobStatus.RUNNING}), JobStatus.PENDING, AttemptOutcome.LOST),
    "rescue at the cap": Move(
        frozenset({JobStatus.RUNNING}), JobStatus.FAILED, AttemptOutcome.LOST
    ),
}
"""Every move the service makes: `runs` makes claim, complete, fail, requeue (a worker's
hand-back) and rescue for a worker's run; this module the operators' actions."""

ALLOWED_FROM: dict[JobStatus, frozenset[JobStatus]] = {
    status: frozenset().union(*(m.sources for m in MOVES.values() if m.target is status))
    for status in JobStatus
    if any(m.target is status for m in MOVES.values())
}
"""For each status, the statuses a job may reach it from (running to pending included: a
requeue, a hand-back, a rescue)."""


# --- Selections ----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobSelection:
    """Which jobs an operator's action takes: every condition given must hold. The action
    takes, of those, the jobs in a status it moves from; the rest are left as they are."""

    job_ids: Sequence[uuid.UUID | str] | None = None
    analyst_id: uuid.UUID | str | None = None
    statuses: Sequence[JobStatus | str] | None = None
    collection_type: CollectionType | str | None = None
    """Jobs that collect this type (among others)."""
    created_after: datetime | None = None
    created_before: datetime | None = None
    stalled_for: timedelta | None = None
    """Running jobs with no report (no `updated_at` move) for this long."""

    def conditions(self) -> list[ColumnElement[bool]]:
        """The checked conditions; a bad value raises `JobValidationError` naming it."""
        jobs = JOBS.c
        where: list[ColumnElement[bool]] = []
        if self.job_ids is not None:
            if isinstance(self.job_ids, str | bytes) or not isinstance(self.job_ids, Sequence):
                raise JobValidationError("job_ids", "must be a list of job ids")
            ids = [check.identifier(i, f"job_ids[{n}]") for n, i in enumerate(self.job_ids)]
            where.append(jobs.id.in_(ids))
        if self.analyst_id is not None:
            where.append(jobs.analyst_id == check.identifier(self.analyst_id, "analyst_id"))
        if self.statuses is not None:
            if isinstance(self.statuses, str) or not isinstance(self.statuses, Sequence):
                raise JobValidationError("statuses", "must be a list of statuses")
            wanted = [check.member(JobStatus, s, "statuses", "status") for s in self.statuses]
            where.append(jobs.status.in_([s.value for s in wanted]))
        if self.collection_type is not None:
            kind = check.collection_type(self.collection_type, "collection_type")
            where.append(jobs.collection_types.contains(literal([kind], ARRAY(Text))))
        after = check.optional_aware(self.created_after, "created_after")
        before = check.optional_aware(self.created_before, "created_before")
        if after is not None:
            where.append(jobs.created_at >= after)
        if before is not None:
            where.append(jobs.created_at < before)
        if after is not None and before is not None and before < after:
            raise JobValidationError("created_before", "must not be before created_after")
        if self.stalled_for is not None:
            stalled_for = check.positive_timedelta(self.stalled_for, "stalled_for")
            where += [jobs.status == JobStatus.RUNNING.value, jobs.updated_at < now() - stalled_for]
        return where


# --- Moves ---------------------------------------------------------------------------------

_JOB_COLUMNS = tuple(JOBS.c)


async def _move(
    session: AsyncSession,
    move: Move,
    where: Sequence[ColumnElement[bool]],
    values: dict[str, Any],
    *,
    tell_workers: bool = True,
    params: dict[str, Any] | None = None,
) -> list[CollectionJob]:
    """`_move_statement`, built and run."""
    moves = _as_jobs(_move_statement(move, where, values, tell_workers=tell_workers))
    return list((await session.scalars(moves, params or {})).all())


def _move_statement(
    move: Move,
    where: Sequence[ColumnElement[bool]],
    values: dict[str, Any],
    *,
    tell_workers: bool,
) -> Any:
    """One statement: every job `where` selects, in a status `move` leaves, moved; its live
    attempt ended as `move` says; the workers told (the attempt's worker stops it, when
    `tell_workers`; waiting workers look at the queue, when the job became pending), and
    whoever shows jobs live (`JOB_CHANGED`). A
    job row is locked before its attempt row, as every statement of `runs` does."""
    jobs = JOBS.c
    moved = (
        update(JOBS)
        .where(jobs.status.in_([_constant(s) for s in sorted(move.sources)]), *where)
        .values(status=move.target.value, updated_at=now(), **values)
        .returning(*_JOB_COLUMNS)
        .cte("moved")
    )
    told: list[Any] = []
    statement = select(*(moved.c[c.name] for c in _JOB_COLUMNS))
    if move.attempt is not None:
        attempts = ATTEMPTS.c
        ended = (
            update(ATTEMPTS)
            .where(attempts.collection_job_id == moved.c.id, attempts.ended_at.is_(None))
            .values(ended_at=func.now(), outcome=move.attempt.value)
            .returning(attempts.id, attempts.collection_job_id)
            .cte("ended")
        )
        statement = statement.add_cte(ended)
        if tell_workers:
            stopped = func.pg_notify(ATTEMPT_STOPPED, cast(ended.c.id, Text))
            told.append(
                select(func.count(stopped))
                .where(ended.c.collection_job_id == moved.c.id)
                .scalar_subquery()
            )
    if move.target is JobStatus.PENDING:
        told.append(func.pg_notify(JOB_CREATED, cast(moved.c.id, Text)))
    told.append(func.pg_notify(JOB_CHANGED, cast(moved.c.id, Text)))
    statement = statement.add_columns(*(t.label(f"told_{n}") for n, t in enumerate(told)))
    return statement


def _as_jobs(statement: Any) -> Any:
    """`statement` (a `_move_statement`) returning the session's own job objects."""
    return select(CollectionJob).from_statement(statement).execution_options(populate_existing=True)


def _constant(status: JobStatus) -> ColumnElement[str]:
    """A status written into the statement: a constant the driver's form needs no value
    for (a list bound as a parameter is expanded per call, which only SQLAlchemy does)."""
    return literal_column(f"'{status.value}'", String)


async def refuse_move(db: Executor, job_id: uuid.UUID, target: JobStatus) -> CollectionJobError:
    """Why one job did not move to `target`: it does not exist, or its status forbids it."""
    found = await fetch(db, JOB_STATE, {"job": job_id})
    if not found:
        return JobNotFoundError(job_id)
    return InvalidTransitionError(job_id, JobStatus(found[0][0]), target)


_ONE_JOB = bindparam("one_job_id", type_=UUID(as_uuid=True))
_ONE_RUN = bindparam("one_run", type_=TIMESTAMPTZ)
_ONE_JOB_STATEMENTS: dict[tuple[str, str, bool], tuple[Any, Statement]] = {}
"""(action, values' variant, fenced to a run) -> its statement for one job: for a session,
and compiled once for the driver."""


async def _move_one(
    db: Executor,
    action: str,
    job_id: uuid.UUID | str,
    values: dict[str, Any],
    *,
    variant: str = "",
    params: dict[str, Any] | None = None,
    run_started_at: datetime | None = None,
) -> CollectionJob:
    """`_move` of one job; the error says why when it did not move. Given a run (the
    `started_at` a claim returned), only while that run is the job's current one: the
    caller is that run's worker, which needs no telling. In a session the job returned is
    the session's; on a connection in autocommit mode the move is its own transaction, one
    round trip through the driver."""
    move = MOVES[action]
    job_id = check.identifier(job_id, "job_id")
    run_started_at = check.optional_aware(run_started_at, "run_started_at")
    fenced = run_started_at is not None
    key = (action, variant, fenced)
    statements = _ONE_JOB_STATEMENTS.get(key)
    if statements is None:  # built once, then compiled once: the API's and operators' path
        where = [JOBS.c.id == _ONE_JOB] + ([JOBS.c.started_at == _ONE_RUN] if fenced else [])
        moves = _move_statement(move, where, values, tell_workers=not fenced)
        statements = _ONE_JOB_STATEMENTS[key] = (_as_jobs(moves), statement(moves))
    bound = {"one_job_id": job_id, "one_run": run_started_at, **(params or {})}
    if isinstance(db, AsyncSession):
        moved: list[CollectionJob] = list((await db.scalars(statements[0], bound)).all())
    else:
        moved = [job_from_row(row) for row in await fetch(db, statements[1], bound)]
    if moved:
        return moved[0]
    if run_started_at is not None:
        found = await fetch(db, JOB_STATE, {"job": job_id})
        if not found:
            raise JobNotFoundError(job_id)
        status, _types, started_at = found[0]
        what = {"complete": "completion", "fail": "failure"}.get(action, f"the {action}")
        raise not_this_run(job_id, JobStatus(status), started_at, run_started_at, what)
    raise await refuse_move(db, job_id, move.target)


_job_type_names = func.unnest(JOBS.c.collection_types).table_valued("name")
_ALL_TYPES_DONE = (
    select(func.jsonb_object_agg(_job_type_names.c.name, 100))
    .select_from(_job_type_names)
    .scalar_subquery()
)
_COMPLETED: dict[str, Any] = {
    "completed_at": now(),
    "progress": _ALL_TYPES_DONE,
    "overall_progress": "100.0",
    "estimated_completion_time": None,
}
_REQUEUED: dict[str, Any] = {"started_at": None, "estimated_completion_time": None}


_FAILED: dict[str, Any] = {
    "completed_at": now(),
    "error_message": bindparam("failure_message", type_=String),
    "estimated_completion_time": None,
}


def _failure(error_message: str) -> dict[str, Any]:
    """The parameters of `_FAILED`."""
    return {"failure_message": cut_error_message(error_message)}


def _retried(keep_progress: bool) -> dict[str, Any]:
    values: dict[str, Any] = {
        "started_at": None,
        "completed_at": None,
        "error_message": None,
        "estimated_completion_time": None,
    }
    if not keep_progress:
        values |= {"progress": literal_column("'{}'::jsonb", JSONB), "overall_progress": "0.0"}
    return values


def cut_error_message(message: str) -> str:
    """A message fit for `error_message`: clean one-line text, cut to the column."""
    return check.clean_text(message, "error_message")[:ERROR_MESSAGE_MAX_LENGTH]


async def complete_job(
    db: Executor, job_id: uuid.UUID | str, *, run_started_at: datetime | None = None
) -> CollectionJob:
    """running -> completed; every type shows 100 and the job 100.0; its attempt ends
    `completed`. A worker passes its run (`run_started_at`): a superseded run completes
    nothing (`JobNotRunningError`). The runtime's own is `runs.complete_run`."""
    return await _move_one(db, "complete", job_id, _COMPLETED, run_started_at=run_started_at)


async def fail_job(
    db: Executor,
    job_id: uuid.UUID | str,
    error_message: str,
    *,
    run_started_at: datetime | None = None,
) -> CollectionJob:
    """pending|running -> failed, saying why (a message longer than the column is cut,
    not refused); a live attempt ends `failed` and its worker stops its collectors.
    Fenced to a run like `complete_job`."""
    return await _move_one(
        db,
        "fail",
        job_id,
        _FAILED,
        params=_failure(error_message),
        run_started_at=run_started_at,
    )


async def cancel_job(db: Executor, job_id: uuid.UUID | str) -> CollectionJob:
    """pending|running -> cancelled; a live attempt ends `cancelled` and its worker stops
    its collectors when the caller commits."""
    return await _move_one(db, "cancel", job_id, _CANCELLED)


async def requeue_job(db: Executor, job_id: uuid.UUID | str) -> CollectionJob:
    """running -> pending, its progress kept so the next attempt resumes where this one
    stopped; the live attempt ends `released` (not counted as lost), its worker stops its
    collectors, and waiting workers look at the queue."""
    return await _move_one(db, "requeue", job_id, _REQUEUED)


async def retry_job(
    db: Executor, job_id: uuid.UUID | str, *, keep_progress: bool = True
) -> CollectionJob:
    """failed|cancelled -> pending, its error cleared; its progress kept (the next attempt
    resumes) or, with `keep_progress=False`, cleared (it starts over)."""
    variant = "keep" if keep_progress else "clear"
    return await _move_one(db, "retry", job_id, _retried(keep_progress), variant=variant)


_CANCELLED: dict[str, Any] = {"completed_at": now(), "estimated_completion_time": None}


async def cancel_jobs(session: AsyncSession, selection: JobSelection) -> list[CollectionJob]:
    """`cancel_job` of every pending or running job `selection` matches, in one statement;
    returns the jobs cancelled."""
    return await _move(session, MOVES["cancel"], selection.conditions(), _CANCELLED)


async def requeue_jobs(session: AsyncSession, selection: JobSelection) -> list[CollectionJob]:
    """`requeue_job` of every running job `selection` matches, in one statement."""
    return await _move(session, MOVES["requeue"], selection.conditions(), _REQUEUED)


async def retry_jobs(
    session: AsyncSession, selection: JobSelection, *, keep_progress: bool = True
) -> list[CollectionJob]:
    """`retry_job` of every failed or cancelled job `selection` matches, in one statement."""
    return await _move(session, MOVES["retry"], selection.conditions(), _retried(keep_progress))


async def fail_jobs(
    session: AsyncSession, selection: JobSelection, error_message: str
) -> list[CollectionJob]:
    """`fail_job` of every pending or running job `selection` matches, in one statement."""
    where = selection.conditions()
    return await _move(session, MOVES["fail"], where, _FAILED, params=_failure(error_message))


# --- Stalled jobs --------------------------------------------------------------------------


async def list_stalled_jobs(session: AsyncSession, stalled_for: timedelta) -> list[CollectionJob]:
    """Running jobs with no report (no `updated_at` move) for `stalled_for`, oldest first."""
    where = JobSelection(stalled_for=stalled_for).conditions()
    statement = select(CollectionJob).where(*where).order_by(CollectionJob.updated_at)
    return list(await session.scalars(statement))


async def fail_stalled_jobs(
    session: AsyncSession, stalled_for: timedelta, error_message: str | None = None
) -> list[CollectionJob]:
    """Fail every stalled job in one statement (`fail_jobs`); returns the jobs failed. A
    job that reports while this runs is re-checked after its lock and left alone."""
    selection = JobSelection(stalled_for=stalled_for)
    where = selection.conditions()
    message = f"no progress reported for {stalled_for}" if error_message is None else error_message
    return await _move(session, MOVES["fail"], where, _FAILED, params=_failure(message))


async def requeue_stalled_jobs(
    session: AsyncSession, stalled_for: timedelta
) -> list[CollectionJob]:
    """Put every stalled job back to pending with its progress (`requeue_jobs`), in one
    statement. The job keeps its place in the queue (its `created_at`)."""
    return await requeue_jobs(session, JobSelection(stalled_for=stalled_for))
