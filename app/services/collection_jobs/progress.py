"""Progress reports: one UPDATE that merges, averages and estimates."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Numeric,
    String,
    Text,
    any_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from app.models import (
    CollectionType,
    JobStatus,
)
from app.models.base import TIMESTAMPTZ
from app.services.collection_jobs import inputs as check
from app.services.collection_jobs.common import JOB_STATE, JOBS, Executor, fetch, now, statement
from app.services.collection_jobs.errors import (
    CollectionJobError,
    JobNotFoundError,
    JobNotRunningError,
    JobValidationError,
)

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
    percent = _percent_of(merged, type_names.c.name)
    mean = select(func.avg(percent)).select_from(type_names).scalar_subquery()
    # The job ends with its slowest type, so once every type has begun each is projected
    # on its own and the latest wins (elapsed x 100 / the slowest); before that, the mean.
    # Measured beside the mean alone in benchmarks/estimate_accuracy.py.
    per_type = (
        select(func.coalesce(func.nullif(func.min(percent), _ZERO), func.avg(percent), type_=Float))
        .select_from(type_names)
        .correlate(JOBS)
        .subquery("per_type")
    )
    divisor = per_type.c[0]
    # Seconds from the start to the projected finish; checked against the cap before it
    # becomes an interval, which a tiny first report long after the start would overflow.
    projected = func.extract("epoch", now() - jobs.started_at) * (_HUNDRED / divisor)
    # One subquery for the estimate: each use of a scalar subquery is evaluated anew.
    estimate = (
        select(
            case(
                (
                    (divisor > _ZERO) & (projected <= _MAX_ESTIMATE_SECONDS),
                    jobs.started_at + projected * literal_column("interval '1 second'"),
                ),
                else_=None,
            )
        )
        .select_from(per_type)
        .correlate(JOBS)
        .scalar_subquery()
    )
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
            estimated_completion_time=estimate,
        )
        .returning(jobs.progress, jobs.overall_progress, jobs.estimated_completion_time)
    )


PROGRESS_STATEMENT = _progress_statement()
"""Built once; parameters `job_id`, `collection_type`, `percent`, `run_started_at`."""

_PROGRESS = statement(PROGRESS_STATEMENT)


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
    # In autocommit mode the precompiled statement goes straight to asyncpg, skipping
    # SQLAlchemy's per-statement work (see docs/benchmarks.md); its codecs decode the JSONB.
    rows = await fetch(db, _PROGRESS, params)
    if rows:
        progress, overall, estimate = rows[0]
        return ProgressReport(
            progress={name: float(value) for name, value in progress.items()},
            overall_progress=float(overall),
            estimated_completion_time=estimate,
        )
    raise await _why_not_recorded(db, job_id, type_value, run_started_at)


async def _why_not_recorded(
    db: Executor, job_id: uuid.UUID, collection_type: str, run: datetime | None
) -> CollectionJobError:
    rows = await fetch(db, JOB_STATE, {"job": job_id})
    if not rows:
        return JobNotFoundError(job_id)
    status, types, started_at = JobStatus(rows[0][0]), rows[0][1], rows[0][2]
    if status is not JobStatus.RUNNING:
        return JobNotRunningError(job_id, status)
    if collection_type not in types:
        return JobValidationError(
            "collection_type",
            f"{collection_type} is not one of this job's types ({', '.join(types)})",
        )
    if run is not None and run != started_at:
        return JobNotRunningError(job_id, status, " again in a newer run")
    # It was not running at the update and is running now: a claim came in between.
    return JobNotRunningError(job_id, status, " in a run that began after this report")
