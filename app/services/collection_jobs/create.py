"""Creating a job: the request, checked as an API body would be, and its one statement."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
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
from sqlalchemy import column, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import CollectionJob, CollectionType
from app.services.collection_jobs.common import JOBS, Executor, fetch, job_from_row, statement
from app.services.collection_jobs.errors import JobValidationError
from app.services.collection_jobs.notify import JOB_CHANGED, JOB_CREATED


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
    db: Executor,
    *,
    analyst_id: uuid.UUID,
    collection_types: Sequence[CollectionType | str],
    start_date: datetime,
    end_date: datetime,
) -> CollectionJob:
    """Add a pending job. One statement, built once: the INSERT, which writes nothing when
    the analyst does not exist (so a bad analyst id is a validation error and the caller's
    transaction stays usable), and the notice to waiting workers (`JOB_CREATED`), sent
    when the caller commits.

    In a session the job joins its unit of work (and its identity map). On a connection in
    autocommit mode (`app.db.engine.autocommit`, or the worker's pool) it is its own
    transaction, one round trip through the driver: the fastest way to enqueue."""
    request = validate_new_job(
        analyst_id=analyst_id,
        collection_types=collection_types,
        start_date=start_date,
        end_date=end_date,
    )
    params = {
        "analyst": request.analyst_id,
        "types": [t.value for t in request.collection_types],
        "start": request.start_date,
        "end": request.end_date,
    }
    job: CollectionJob | None
    if isinstance(db, AsyncSession):
        job = (await db.scalars(_CREATE, params)).one_or_none()
    else:
        rows = await fetch(db, _CREATE_ROW, params)
        job = job_from_row(rows[0]) if rows else None
    if job is None:
        raise JobValidationError("analyst_id", f"no analyst with id {request.analyst_id}")
    return job


_JOB_NAMES = ", ".join(c.name for c in JOBS.c)
_CREATE_SQL = text(
    f"""
WITH job AS (
    INSERT INTO collection_jobs (analyst_id, collection_types, start_date, end_date)
    SELECT :analyst, CAST(:types AS text[]), :start, :end
    WHERE EXISTS (SELECT FROM analysts WHERE id = :analyst)
    RETURNING {_JOB_NAMES}
)
SELECT {_JOB_NAMES}, pg_notify('{JOB_CREATED}', CAST(id AS text)) AS notified,
       pg_notify('{JOB_CHANGED}', CAST(id AS text)) AS changed
FROM job
"""
).columns(*JOBS.c, column("notified"), column("changed"))
_CREATE = select(CollectionJob).from_statement(_CREATE_SQL)
_CREATE_ROW = statement(_CREATE_SQL)
