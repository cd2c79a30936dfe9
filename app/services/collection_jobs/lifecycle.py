"""Creating jobs, the status machine, claiming, stalled jobs: one statement each."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
)
from pydantic import field_validator as pydantic_field_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import (
    ColumnElement,
    Text,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Update

from app.models import (
    Analyst,
    CollectionJob,
    CollectionType,
    JobStatus,
)
from app.models.base import TIMESTAMPTZ
from app.models.collection_job import ERROR_MESSAGE_MAX_LENGTH
from app.services.collection_jobs import inputs as check
from app.services.collection_jobs.common import now
from app.services.collection_jobs.errors import (
    InvalidTransitionError,
    JobNotFoundError,
    JobValidationError,
    not_this_run,
)
from app.services.collection_jobs.notify import JOB_CANCELLED, JOB_CREATED, notify

# --- Create --------------------------------------------------------------------------------


class NewCollectionJob(BaseModel):
    """What it takes to start a collection; usable as an API request body as it is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    analyst_id: uuid.UUID
    collection_types: list[CollectionType] = Field(min_length=1)
    start_date: AwareDatetime
    end_date: AwareDatetime

    @pydantic_field_validator("collection_types")
    @classmethod
    def _no_duplicates(cls, types: list[CollectionType]) -> list[CollectionType]:
        seen: set[CollectionType] = set()
        for collection_type in types:
            if collection_type in seen:
                raise PydanticCustomError(
                    "duplicate", "{type} is listed twice", {"type": collection_type.value}
                )
            seen.add(collection_type)
        return types

    @pydantic_field_validator("end_date")
    @classmethod
    def _not_before_start(cls, end: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start_date")
        if start is not None and end < start:
            raise PydanticCustomError("date_range", "must not be before start_date", {})
        return end


def validate_new_job(**fields: Any) -> NewCollectionJob:
    """Check a request to create a job; the first problem raises `JobValidationError`."""
    try:
        return NewCollectionJob(**fields)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = str(error["loc"][0]) if error["loc"] else "request"
        raise JobValidationError(field, error["msg"]) from None


async def create_job(
    session: AsyncSession,
    *,
    analyst_id: uuid.UUID,
    collection_types: Sequence[CollectionType | str],
    start_date: datetime,
    end_date: datetime,
) -> CollectionJob:
    """Add a pending job. One INSERT that writes nothing when the analyst does not exist,
    so a bad analyst id is a validation error and the caller's transaction stays usable.
    Waiting workers are notified (`JOB_CREATED`) when the caller commits."""
    request = validate_new_job(
        analyst_id=analyst_id,
        collection_types=collection_types,
        start_date=start_date,
        end_date=end_date,
    )
    row = select(
        literal(request.analyst_id, UUID(as_uuid=True)),
        literal([t.value for t in request.collection_types], ARRAY(Text)),
        literal(request.start_date, TIMESTAMPTZ),
        literal(request.end_date, TIMESTAMPTZ),
    ).where(exists().where(Analyst.id == request.analyst_id))
    statement = (
        insert(CollectionJob)
        .from_select(["analyst_id", "collection_types", "start_date", "end_date"], row)
        .returning(CollectionJob)
    )
    job = (await session.scalars(statement)).one_or_none()
    if job is None:
        raise JobValidationError("analyst_id", f"no analyst with id {request.analyst_id}")
    await notify(session, JOB_CREATED, job.id)
    return job


# --- Status machine ------------------------------------------------------------------------

ALLOWED_FROM: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.RUNNING: frozenset({JobStatus.PENDING}),
    JobStatus.COMPLETED: frozenset({JobStatus.RUNNING}),
    JobStatus.FAILED: frozenset({JobStatus.RUNNING}),
    JobStatus.CANCELLED: frozenset({JobStatus.PENDING, JobStatus.RUNNING}),
}
"""For each status, the statuses a job may reach it from."""


_job_type_names = func.unnest(CollectionJob.collection_types).table_valued("name")
_ALL_TYPES_DONE = (
    select(func.jsonb_object_agg(_job_type_names.c.name, 100))
    .select_from(_job_type_names)
    .scalar_subquery()
)


def _transition_statement(
    job_id: uuid.UUID, target: JobStatus, run_started_at: datetime | None, **values: Any
) -> Update:
    """The UPDATE of `_transition`, for inputs already checked."""
    conditions = [CollectionJob.id == job_id, CollectionJob.status.in_(ALLOWED_FROM[target])]
    if run_started_at is not None:
        conditions.append(CollectionJob.started_at == run_started_at)
    return update(CollectionJob).where(*conditions).values(status=target, **values)


async def _transition(
    session: AsyncSession,
    job_id: uuid.UUID | str,
    target: JobStatus,
    *,
    run_started_at: datetime | None = None,
    **values: Any,
) -> CollectionJob:
    """One UPDATE whose WHERE states what must hold; given a run (the `started_at` a claim
    returned), only while that run is the job's current one."""
    job_id = check.identifier(job_id, "job_id")
    run_started_at = check.optional_aware(run_started_at, "run_started_at")
    statement = (
        _transition_statement(job_id, target, run_started_at, **values)
        .returning(CollectionJob)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    job = (await session.scalars(statement)).one_or_none()
    if job is None:
        found = (
            await session.execute(
                select(CollectionJob.status, CollectionJob.started_at).where(
                    CollectionJob.id == job_id
                )
            )
        ).one_or_none()
        if found is None:
            raise JobNotFoundError(job_id)
        if run_started_at is not None:
            what = {JobStatus.COMPLETED: "completion", JobStatus.FAILED: "failure"}.get(
                target, f"the move to {target}"
            )
            raise not_this_run(job_id, found.status, found.started_at, run_started_at, what)
        raise InvalidTransitionError(job_id, found.status, target)
    return job


async def start_job(session: AsyncSession, job_id: uuid.UUID | str) -> CollectionJob:
    """pending -> running, for a worker that picked this job by id (see `claim_next_job`)."""
    return await _transition(
        session, job_id, JobStatus.RUNNING, started_at=now(), estimated_completion_time=None
    )


_COMPLETED: dict[str, Any] = {
    "completed_at": now(),
    "progress": _ALL_TYPES_DONE,
    "overall_progress": "100.0",
    "estimated_completion_time": None,
}


async def complete_job(
    session: AsyncSession, job_id: uuid.UUID | str, *, run_started_at: datetime | None = None
) -> CollectionJob:
    """running -> completed; every type shows 100 and the job 100.0. A worker passes its
    run (`run_started_at`, see `add_job_logs`): a superseded run completes nothing."""
    return await _transition(
        session, job_id, JobStatus.COMPLETED, run_started_at=run_started_at, **_COMPLETED
    )


def completion(job_id: uuid.UUID | str, *, run_started_at: datetime) -> Update:
    """`complete_job`'s UPDATE, unexecuted, for a caller that makes it part of one statement
    (the worker ends the job's attempt with it). No row updated: `complete_job` says why."""
    return _transition_statement(
        check.identifier(job_id, "job_id"),
        JobStatus.COMPLETED,
        check.optional_aware(run_started_at, "run_started_at"),
        **_COMPLETED,
    )


async def fail_job(
    session: AsyncSession,
    job_id: uuid.UUID | str,
    error_message: str,
    *,
    run_started_at: datetime | None = None,
) -> CollectionJob:
    """running -> failed; a message longer than the column is cut, not refused. Fenced to
    a run like `complete_job`."""
    return await _transition(
        session,
        job_id,
        JobStatus.FAILED,
        run_started_at=run_started_at,
        completed_at=now(),
        error_message=_cut_error_message(error_message),
        estimated_completion_time=None,
    )


async def cancel_job(session: AsyncSession, job_id: uuid.UUID | str) -> CollectionJob:
    """pending|running -> cancelled. A running job's worker is notified (`JOB_CANCELLED`)
    when the caller commits, and refused on its next write in any case."""
    job = await _transition(
        session, job_id, JobStatus.CANCELLED, completed_at=now(), estimated_completion_time=None
    )
    await notify(session, JOB_CANCELLED, job.id)
    return job


def _cut_error_message(message: str) -> str:
    return check.clean_text(message, "error_message")[:ERROR_MESSAGE_MAX_LENGTH]


# --- Claiming and stalled jobs -------------------------------------------------------------


async def claim_next_job(session: AsyncSession) -> CollectionJob | None:
    """Take the oldest pending job and make it running, in one statement; None if none.

    Jobs that other workers are claiming at the same moment are skipped (SKIP LOCKED),
    so no two workers ever get the same job and none waits for another.
    """
    oldest_pending = (
        select(CollectionJob.id)
        .where(CollectionJob.status == JobStatus.PENDING)
        .order_by(CollectionJob.created_at, CollectionJob.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        update(CollectionJob)
        .where(CollectionJob.id == oldest_pending, CollectionJob.status == JobStatus.PENDING)
        .values(status=JobStatus.RUNNING, started_at=now(), estimated_completion_time=None)
        .returning(CollectionJob)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return (await session.scalars(statement)).one_or_none()


def _stalled(stalled_for: timedelta) -> list[ColumnElement[bool]]:
    check.positive_timedelta(stalled_for, "stalled_for")
    return [
        CollectionJob.status == JobStatus.RUNNING,
        CollectionJob.updated_at < now() - stalled_for,
    ]


async def list_stalled_jobs(session: AsyncSession, stalled_for: timedelta) -> list[CollectionJob]:
    """Running jobs with no report (no `updated_at` move) for `stalled_for`, oldest first."""
    statement = (
        select(CollectionJob).where(*_stalled(stalled_for)).order_by(CollectionJob.updated_at)
    )
    return list(await session.scalars(statement))


async def _update_stalled(
    session: AsyncSession, stalled_for: timedelta, **values: Any
) -> list[CollectionJob]:
    # A job that reports while this runs is re-checked after its lock and left alone.
    statement = (
        update(CollectionJob)
        .where(*_stalled(stalled_for))
        .values(**values)
        .returning(CollectionJob)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return list(await session.scalars(statement))


async def fail_stalled_jobs(
    session: AsyncSession, stalled_for: timedelta, error_message: str | None = None
) -> list[CollectionJob]:
    """Fail every stalled job in one statement; returns the jobs failed."""
    check.positive_timedelta(stalled_for, "stalled_for")
    message = f"no progress reported for {stalled_for}" if error_message is None else error_message
    return await _update_stalled(
        session,
        stalled_for,
        status=JobStatus.FAILED,
        completed_at=now(),
        error_message=_cut_error_message(message),
        estimated_completion_time=None,
    )


async def requeue_stalled_jobs(
    session: AsyncSession, stalled_for: timedelta
) -> list[CollectionJob]:
    """Put every stalled job back to pending, progress cleared, in one statement.

    The job keeps its place in the queue (its `created_at`); its old worker, if alive,
    is told on its next report that the job is no longer its own.
    """
    return await _update_stalled(
        session,
        stalled_for,
        status=JobStatus.PENDING,
        started_at=None,
        progress={},
        overall_progress="0.0",
        estimated_completion_time=None,
    )
