"""The collection job lifecycle, for the platform's API and its workers.

Every change is one SQL statement whose WHERE clause states what must still be true
(`status IN (...)`), so any number of callers on any number of machines can write at once:
nothing is read into Python and written back, and a lost race is reported, never papered
over. The functions take the caller's `AsyncSession` and never commit; the caller's unit of
work (`app.db.engine.session_scope`) does. Workers should commit each report at once (an
open transaction keeps the job's row locked), or send reports and logs on a connection in
autocommit mode (see `Executor`).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, NamedTuple, TypeGuard, TypeVar

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
    Float,
    Integer,
    Numeric,
    String,
    Text,
    any_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    literal_column,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models import (
    Analyst,
    Base,
    CollectionJob,
    CollectionType,
    DataCollectionLog,
    JobStatus,
    LogStatus,
)
from app.models.base import TIMESTAMPTZ
from app.models.collection_job import ERROR_MESSAGE_MAX_LENGTH
from app.services import job_inputs as check
from app.services.job_errors import (
    CollectionJobError,
    InvalidTransitionError,
    JobNotFoundError,
    JobNotRunningError,
    JobValidationError,
)

__all__ = [
    "ALLOWED_FROM",
    "CollectionJobError",
    "Cursor",
    "InvalidTransitionError",
    "JobNotFoundError",
    "JobNotRunningError",
    "JobValidationError",
    "LogEntry",
    "NewCollectionJob",
    "Page",
    "ProgressReport",
    "add_job_logs",
    "cancel_job",
    "claim_next_job",
    "complete_job",
    "create_job",
    "fail_job",
    "fail_stalled_jobs",
    "list_analyst_jobs",
    "list_job_logs",
    "list_stalled_jobs",
    "report_progress",
    "requeue_stalled_jobs",
    "start_job",
    "validate_new_job",
]

T = TypeVar("T")

Executor = AsyncSession | AsyncConnection
"""Where the one-statement worker calls run: a session inside the caller's unit of work, or
a connection in autocommit mode, where each call is its own transaction and costs one
round trip instead of three (BEGIN, the statement, COMMIT)."""

JOBS = Base.metadata.tables[CollectionJob.__tablename__]
LOGS = Base.metadata.tables[DataCollectionLog.__tablename__]
"""The tables, for the statements that need no ORM objects back (the fast paths)."""

MAX_PAGE_SIZE = 1000


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
    so a bad analyst id is a validation error and the caller's transaction stays usable."""
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
    return job


# --- Status machine ------------------------------------------------------------------------

ALLOWED_FROM: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.RUNNING: frozenset({JobStatus.PENDING}),
    JobStatus.COMPLETED: frozenset({JobStatus.RUNNING}),
    JobStatus.FAILED: frozenset({JobStatus.RUNNING}),
    JobStatus.CANCELLED: frozenset({JobStatus.PENDING, JobStatus.RUNNING}),
}
"""For each status, the statuses a job may reach it from."""

_now = func.statement_timestamp
"""The time of the statement: the same instant `updated_at` gets on every update."""

_job_type_names = func.unnest(CollectionJob.collection_types).table_valued("name")
_ALL_TYPES_DONE = (
    select(func.jsonb_object_agg(_job_type_names.c.name, 100))
    .select_from(_job_type_names)
    .scalar_subquery()
)


async def _transition(
    session: AsyncSession, job_id: uuid.UUID | str, target: JobStatus, **values: Any
) -> CollectionJob:
    job_id = check.identifier(job_id, "job_id")
    statement = (
        update(CollectionJob)
        .where(CollectionJob.id == job_id, CollectionJob.status.in_(ALLOWED_FROM[target]))
        .values(status=target, **values)
        .returning(CollectionJob)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    job = (await session.scalars(statement)).one_or_none()
    if job is None:
        current = await session.scalar(
            select(CollectionJob.status).where(CollectionJob.id == job_id)
        )
        if current is None:
            raise JobNotFoundError(job_id)
        raise InvalidTransitionError(job_id, current, target)
    return job


async def start_job(session: AsyncSession, job_id: uuid.UUID | str) -> CollectionJob:
    """pending -> running, for a worker that picked this job by id (see `claim_next_job`)."""
    return await _transition(
        session, job_id, JobStatus.RUNNING, started_at=_now(), estimated_completion_time=None
    )


async def complete_job(session: AsyncSession, job_id: uuid.UUID | str) -> CollectionJob:
    """running -> completed; every type shows 100 and the job 100.0."""
    return await _transition(
        session,
        job_id,
        JobStatus.COMPLETED,
        completed_at=_now(),
        progress=_ALL_TYPES_DONE,
        overall_progress="100.0",
        estimated_completion_time=None,
    )


async def fail_job(
    session: AsyncSession, job_id: uuid.UUID | str, error_message: str
) -> CollectionJob:
    """running -> failed; a message longer than the column is cut, not refused."""
    return await _transition(
        session,
        job_id,
        JobStatus.FAILED,
        completed_at=_now(),
        error_message=_cut_error_message(error_message),
        estimated_completion_time=None,
    )


async def cancel_job(session: AsyncSession, job_id: uuid.UUID | str) -> CollectionJob:
    """pending|running -> cancelled. A running job's worker learns it on its next report."""
    return await _transition(
        session, job_id, JobStatus.CANCELLED, completed_at=_now(), estimated_completion_time=None
    )


def _cut_error_message(message: str) -> str:
    return check.clean_text(message, "error_message")[:ERROR_MESSAGE_MAX_LENGTH]


# --- Progress ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProgressReport:
    """The job's progress right after a report was recorded."""

    progress: dict[str, float]
    overall_progress: float
    estimated_completion_time: datetime | None


# The hot statement's constants are written into its SQL rather than bound, which saves
# converting seven parameters on every report.
_ZERO = literal_column("0", Float)
_HUNDRED = literal_column("100.0", Float)
_EMPTY_OBJECT = literal_column("'{}'::jsonb", JSONB)
_RUNNING = literal_column(f"'{JobStatus.RUNNING.value}'", String)
MAX_ESTIMATE = timedelta(days=365)
"""No estimate (NULL) when the projected finish is further than this from the start: at
that rate the figure means nothing (a tiny first report long after the start)."""
_MAX_ESTIMATE_SECONDS = literal_column(str(int(MAX_ESTIMATE.total_seconds())), Float)


def _percent_of(progress: ColumnElement[Any], collection_type: ColumnElement[Any]) -> Any:
    """`progress ->> type` as a number; a type not reported yet counts 0."""
    return func.coalesce(cast(progress.op("->>")(collection_type), Float), _ZERO)


def _progress_statement() -> Any:
    """One UPDATE that merges a report into the JSONB and recomputes everything from it.

    Every value is computed from the row being updated, which PostgreSQL re-reads after
    waiting for a concurrent writer's lock: no report is ever lost. Per type the larger
    value wins, so reports that arrive out of order never move progress backwards.
    """
    jobs = JOBS.c
    collection_type = bindparam("collection_type", type_=Text)
    percent = bindparam("percent", type_=Float)
    merged = func.coalesce(jobs.progress, _EMPTY_OBJECT).op("||", return_type=JSONB)(
        func.jsonb_build_object(
            collection_type, func.greatest(_percent_of(jobs.progress, collection_type), percent)
        )
    )
    type_names = func.unnest(jobs.collection_types).table_valued("name")
    mean = (
        select(func.avg(_percent_of(merged, type_names.c.name)))
        .select_from(type_names)
        .scalar_subquery()
    )
    # Seconds from the start to the projected finish; checked against the cap before it
    # becomes an interval, which a tiny first report long after the start would overflow.
    projected = func.extract("epoch", _now() - jobs.started_at) * (_HUNDRED / mean)
    return (
        update(JOBS)
        .where(
            jobs.id == bindparam("job_id", type_=UUID(as_uuid=True)),
            jobs.status == _RUNNING,
            collection_type == any_(jobs.collection_types),
            # NULL (no run named) matches any run.
            func.coalesce(
                bindparam("run_started_at", type_=TIMESTAMPTZ) == jobs.started_at, true()
            ),
        )
        .values(
            progress=merged,
            overall_progress=cast(func.round(cast(mean, Numeric), literal_column("1")), String),
            estimated_completion_time=case(
                (
                    (mean > _ZERO) & (projected <= _MAX_ESTIMATE_SECONDS),
                    jobs.started_at + projected * literal_column("interval '1 second'"),
                ),
                else_=None,
            ),
        )
        .returning(jobs.progress, jobs.overall_progress, jobs.estimated_completion_time)
    )


PROGRESS_STATEMENT = _progress_statement()
"""Built once; parameters `job_id`, `collection_type`, `percent`, `run_started_at`."""

_progress_compiled = PROGRESS_STATEMENT.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
_PROGRESS_SQL = _progress_compiled.string
_PROGRESS_PARAMETERS = tuple(_progress_compiled.positiontup or ())


async def report_progress(
    db: Executor,
    job_id: uuid.UUID | str,
    collection_type: CollectionType | str,
    percent: float,
    *,
    run_started_at: datetime | None = None,
) -> ProgressReport:
    """Record a worker's progress (0-100) for one of the job's types.

    Raises `JobNotRunningError` when the job is no longer running: that is how a worker
    learns its job was cancelled. Pass the `started_at` that `claim_next_job` returned as
    `run_started_at` to refuse reports from a run that was requeued and claimed again.
    """
    job_id = check.identifier(job_id, "job_id")
    type_value = check.collection_type(collection_type, "collection_type")
    run_started_at = check.optional_aware(run_started_at, "run_started_at")
    params = {
        "job_id": job_id,
        "collection_type": type_value,
        "percent": check.percent(percent),
        "run_started_at": run_started_at,
    }
    if _is_autocommit(db):
        # No transaction to join: the precompiled statement goes straight to asyncpg,
        # skipping SQLAlchemy's per-statement work (see docs/benchmarks.md).
        driver = (await db.get_raw_connection()).driver_connection
        record = await driver.fetchrow(  # type: ignore[union-attr]
            _PROGRESS_SQL, *(params[name] for name in _PROGRESS_PARAMETERS)
        )
        row = None if record is None else tuple(record)  # SQLAlchemy's codecs decode the JSONB
    else:
        result = (await db.execute(PROGRESS_STATEMENT, params)).one_or_none()
        row = None if result is None else tuple(result)
    if row is not None:
        progress, overall, estimate = row
        return ProgressReport(
            progress={name: float(value) for name, value in progress.items()},
            overall_progress=float(overall),
            estimated_completion_time=estimate,
        )
    raise await _why_not_recorded(db, job_id, type_value, run_started_at)


def _is_autocommit(db: Executor) -> TypeGuard[AsyncConnection]:
    if not isinstance(db, AsyncConnection) or db.sync_connection is None:
        return False
    return db.sync_connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"


async def _why_not_recorded(
    db: Executor, job_id: uuid.UUID, collection_type: str, run: datetime | None
) -> CollectionJobError:
    row = (
        await db.execute(
            select(
                CollectionJob.status, CollectionJob.collection_types, CollectionJob.started_at
            ).where(CollectionJob.id == job_id)
        )
    ).one_or_none()
    if row is None:
        return JobNotFoundError(job_id)
    if row.status is not JobStatus.RUNNING:
        return JobNotRunningError(job_id, row.status)
    if collection_type not in row.collection_types:
        return JobValidationError(
            "collection_type",
            f"{collection_type} is not one of this job's types ({', '.join(row.collection_types)})",
        )
    if run is not None and run != row.started_at:
        return JobNotRunningError(job_id, row.status, " again in a newer run")
    # It was not running at the update and is running now: a claim came in between.
    return JobNotRunningError(job_id, row.status, " in a run that began after this report")


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
        .values(status=JobStatus.RUNNING, started_at=_now(), estimated_completion_time=None)
        .returning(CollectionJob)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return (await session.scalars(statement)).one_or_none()


def _stalled(stalled_for: timedelta) -> list[ColumnElement[bool]]:
    check.positive_timedelta(stalled_for, "stalled_for")
    return [
        CollectionJob.status == JobStatus.RUNNING,
        CollectionJob.updated_at < _now() - stalled_for,
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
        completed_at=_now(),
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


# --- Logs and listings ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One `data_collection_logs` row for a job; the analyst is the job's."""

    collection_type: CollectionType | str
    status: LogStatus | str
    records_collected: int = 0
    message: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


_LOG_COLUMN_TYPES: dict[str, Any] = {
    "collection_type": Text,
    "status": Text,
    "records_collected": Integer,
    "message": Text,
    "started_at": TIMESTAMPTZ,
    "completed_at": TIMESTAMPTZ,
}


def _log_columns(entries: Sequence[LogEntry]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {name: [] for name in _LOG_COLUMN_TYPES}
    for index, entry in enumerate(entries):
        where = f"entries[{index}]"
        if not isinstance(entry, LogEntry):
            raise JobValidationError(where, f"must be a LogEntry, not {type(entry).__name__}")
        columns["collection_type"].append(
            check.collection_type(entry.collection_type, f"{where}.collection_type")
        )
        columns["status"].append(
            check.member(LogStatus, entry.status, f"{where}.status", "log status").value
        )
        columns["records_collected"].append(
            check.count(entry.records_collected, f"{where}.records_collected")
        )
        message = entry.message
        columns["message"].append(
            None if message is None else check.clean_text(message, f"{where}.message")
        )
        started = check.optional_aware(entry.started_at, f"{where}.started_at")
        completed = check.optional_aware(entry.completed_at, f"{where}.completed_at")
        if started is not None and completed is not None and completed < started:
            raise JobValidationError(f"{where}.completed_at", "must not be before started_at")
        columns["started_at"].append(started)
        columns["completed_at"].append(completed)
    return columns


def _add_logs_statement() -> Any:
    """INSERT ... SELECT from `unnest` of one array per column: any number of rows in one
    statement and one round trip, the analyst taken from the job (no row if it is missing)."""
    rows = (
        func.unnest(
            *(bindparam(name, type_=ARRAY(kind)) for name, kind in _LOG_COLUMN_TYPES.items())
        )
        .table_valued(*_LOG_COLUMN_TYPES)
        .render_derived(name="entry")
    )
    jobs = JOBS.c
    source = (
        select(jobs.analyst_id, jobs.id, *(rows.c[name] for name in _LOG_COLUMN_TYPES))
        .select_from(JOBS.join(rows, true()))
        .where(
            jobs.id == bindparam("job_id", type_=UUID(as_uuid=True)),
            # Every entry of one of the job's types, or no row at all.
            jobs.collection_types.contains(bindparam("collection_type", type_=ARRAY(Text))),
        )
    )
    return insert(LOGS).from_select(["analyst_id", "collection_job_id", *_LOG_COLUMN_TYPES], source)


ADD_LOGS_STATEMENT = _add_logs_statement()


async def add_job_logs(db: Executor, job_id: uuid.UUID | str, entries: Sequence[LogEntry]) -> int:
    """Write many log rows for a job in one statement; returns how many were written.

    Every entry is checked first: one bad entry writes nothing.
    """
    job_id = check.identifier(job_id, "job_id")
    if not isinstance(entries, Sequence) or isinstance(entries, str | bytes):
        raise JobValidationError("entries", "must be a sequence of LogEntry")
    if not entries:
        return 0
    columns = _log_columns(entries)
    result = await db.execute(ADD_LOGS_STATEMENT, {"job_id": job_id, **columns})
    written: int = result.rowcount  # type: ignore[attr-defined]
    if written == 0:
        types = await db.scalar(select(JOBS.c.collection_types).where(JOBS.c.id == job_id))
        if types is None:
            raise JobNotFoundError(job_id)
        index, wrong = next(
            (i, t) for i, t in enumerate(columns["collection_type"]) if t not in types
        )
        raise JobValidationError(
            f"entries[{index}].collection_type",
            f"{wrong} is not one of this job's types ({', '.join(types)})",
        )
    return written


class Cursor(NamedTuple):
    """Where a page ended: the last item's `created_at` and `id` (ties broken by id)."""

    created_at: datetime
    id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: Cursor | None
    """Pass it back for the next page; None on the last page."""


def _page_size(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise JobValidationError("limit", f"must be an integer from 1 to {MAX_PAGE_SIZE}")
    return limit


def _cursor(cursor: Cursor | None, field: str) -> Cursor | None:
    if cursor is None:
        return None
    if not isinstance(cursor, Cursor):
        raise JobValidationError(field, "must be a Cursor from a previous page")
    return Cursor(
        check.aware(cursor.created_at, f"{field}.created_at"),
        check.identifier(cursor.id, f"{field}.id"),
    )


def _page(rows: Sequence[Any], limit: int) -> Page[Any]:
    items = list(rows[:limit])
    more = len(rows) > limit
    return Page(items, Cursor(items[-1].created_at, items[-1].id) if more else None)


async def list_job_logs(
    session: AsyncSession,
    job_id: uuid.UUID | str,
    *,
    limit: int = 100,
    after: Cursor | None = None,
) -> Page[DataCollectionLog]:
    """A job's logs, oldest first, a page at a time (index on `collection_job_id`)."""
    job_id = check.identifier(job_id, "job_id")
    limit = _page_size(limit)
    after = _cursor(after, "after")
    statement = (
        select(DataCollectionLog)
        .where(DataCollectionLog.collection_job_id == job_id)
        .order_by(DataCollectionLog.created_at, DataCollectionLog.id)
        .limit(limit + 1)
    )
    if after is not None:
        statement = statement.where(
            tuple_(DataCollectionLog.created_at, DataCollectionLog.id) > tuple_(*after)
        )
    return _page((await session.scalars(statement)).all(), limit)


async def list_analyst_jobs(
    session: AsyncSession,
    analyst_id: uuid.UUID | str,
    *,
    status: JobStatus | str | Collection[JobStatus | str] | None = None,
    limit: int = 50,
    before: Cursor | None = None,
) -> Page[CollectionJob]:
    """An analyst's jobs, newest first, optionally of some statuses, a page at a time."""
    analyst_id = check.identifier(analyst_id, "analyst_id")
    limit = _page_size(limit)
    before = _cursor(before, "before")
    statement = (
        select(CollectionJob)
        .where(CollectionJob.analyst_id == analyst_id)
        .order_by(CollectionJob.created_at.desc(), CollectionJob.id.desc())
        .limit(limit + 1)
    )
    if status is not None:
        if isinstance(status, str):
            statuses: list[JobStatus | str] = [status]
        elif isinstance(status, Collection):
            statuses = list(status)
        else:
            raise JobValidationError("status", "must be a status or a collection of statuses")
        wanted = [check.member(JobStatus, s, "status", "status") for s in statuses]
        statement = statement.where(CollectionJob.status.in_(wanted))
    if before is not None:
        statement = statement.where(
            tuple_(CollectionJob.created_at, CollectionJob.id) < tuple_(*before)
        )
    return _page((await session.scalars(statement)).all(), limit)
