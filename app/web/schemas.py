"""The API's response and request bodies, as the OpenAPI schema shows them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.models import AttemptOutcome, CollectionType, JobStatus, LogStatus


class JobState(BaseModel):
    """A job as analysts watch it: every type's percent (0 until reported), the mean, and
    the estimated finish (none until there is a rate to project)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    analyst_id: uuid.UUID
    collection_types: list[CollectionType]
    start_date: datetime
    end_date: datetime
    status: JobStatus
    progress: dict[str, float]
    overall_progress: float
    estimated_completion_time: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    error_message: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Any) -> JobState:
        """From a `collection_jobs` row (a model or a mapping of its columns)."""
        get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
        reported = get("progress") or {}
        types = list(get("collection_types") or ())
        return cls(
            id=get("id"),
            analyst_id=get("analyst_id"),
            collection_types=types,
            start_date=get("start_date"),
            end_date=get("end_date"),
            status=get("status"),
            progress={t: float(reported.get(t, 0.0)) for t in types},
            overall_progress=float(get("overall_progress") or 0.0),
            estimated_completion_time=get("estimated_completion_time"),
            started_at=get("started_at"),
            completed_at=get("completed_at"),
            error_message=get("error_message"),
            created_at=get("created_at"),
            updated_at=get("updated_at"),
        )


class Attempt(BaseModel):
    id: uuid.UUID
    worker_id: uuid.UUID
    worker_name: str
    started_at: datetime
    heartbeat_at: datetime
    ended_at: datetime | None
    outcome: AttemptOutcome | None


class JobDetail(JobState):
    attempts: list[Attempt]
    """Newest first."""


class JobPage(BaseModel):
    items: list[JobState]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last"
    )


class LogItem(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    collection_type: str
    status: LogStatus
    records_collected: int
    message: str | None
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime


class LogPage(BaseModel):
    items: list[LogItem]
    next_cursor: str | None


class WorkerState(BaseModel):
    id: uuid.UUID
    name: str
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_seconds: float
    running_jobs: list[uuid.UUID]


class FinishedInMinute(BaseModel):
    minute: datetime
    completed: int
    failed: int
    cancelled: int


class QueueState(BaseModel):
    counts: dict[JobStatus, int]
    oldest_pending_wait_seconds: float | None
    finished_per_minute: list[FinishedInMinute]
    """The last hour, oldest first, minutes with no finish included."""


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep_progress: bool = False
    """Start again from each type's percent instead of from zero."""
