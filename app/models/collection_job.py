"""Collection jobs: one analyst's request to collect several types of data over a date range."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import TIMESTAMPTZ, Base, Timestamps, UUIDPrimaryKey
from app.models.enums import JobStatus, StrEnumType

ERROR_MESSAGE_MAX_LENGTH = 500
"""The guide's `VARCHAR(500)`; the service cuts longer messages to this."""

if TYPE_CHECKING:
    from app.models.analyst import Analyst
    from app.models.data_collection_log import DataCollectionLog


class CollectionJob(UUIDPrimaryKey, Timestamps, Base):
    """Columns, defaults and indexes exactly as the migration guide's `CREATE TABLE`, one
    index more for the worker's claim (revision 9b2e5f81c4d3) and three for the API's
    listings (revision 2c7e9a4f1b36)."""

    __tablename__ = "collection_jobs"
    __table_args__ = (
        # The worker claims the oldest pending jobs: with this, a claim reads the few rows
        # it takes, however long the queue (the status index alone makes it read and sort
        # every pending job).
        Index(
            "idx_collection_jobs_pending_created_at",
            "created_at",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        # The API lists jobs newest first, keyset-paged on (created_at, id): every page an
        # index range scan, for all jobs or one analyst's, however many there are
        # (revision 2c7e9a4f1b36).
        Index("idx_collection_jobs_created_at_id", "created_at", "id"),
        Index("idx_collection_jobs_analyst_created_at_id", "analyst_id", "created_at", "id"),
        # The queue's finishes per minute read the last hour's, not every finished job.
        Index(
            "idx_collection_jobs_completed_at",
            "completed_at",
            postgresql_where=text("completed_at IS NOT NULL"),
        ),
    )

    analyst_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("analysts.id"), index=True
    )
    collection_types: Mapped[list[str]] = mapped_column(ARRAY(Text))
    start_date: Mapped[datetime] = mapped_column(TIMESTAMPTZ)
    end_date: Mapped[datetime] = mapped_column(TIMESTAMPTZ)
    status: Mapped[JobStatus] = mapped_column(
        StrEnumType(JobStatus, 20), server_default=JobStatus.PENDING.value, index=True
    )
    progress: Mapped[dict[str, Any] | None] = mapped_column(
        JSONB, default=dict, server_default="{}"
    )
    """Percent done per collection type, e.g. {"news": 40.0}; types not reported yet are 0."""
    overall_progress: Mapped[str | None] = mapped_column(String(10), server_default="0.0")
    """Mean over all the job's types, one decimal, as text ('0.0'..'100.0') per the guide."""
    estimated_completion_time: Mapped[datetime | None] = mapped_column(TIMESTAMPTZ)
    started_at: Mapped[datetime | None] = mapped_column(TIMESTAMPTZ)
    completed_at: Mapped[datetime | None] = mapped_column(TIMESTAMPTZ)
    error_message: Mapped[str | None] = mapped_column(String(ERROR_MESSAGE_MAX_LENGTH))

    analyst: Mapped[Analyst] = relationship(back_populates="collection_jobs", lazy="raise")
    logs: Mapped[list[DataCollectionLog]] = relationship(back_populates="job", lazy="raise")

    @property
    def overall_progress_percent(self) -> float | None:
        """`overall_progress` as a number (None when unset)."""
        return None if self.overall_progress is None else float(self.overall_progress)

    def __repr__(self) -> str:
        return f"<CollectionJob {self.id} {self.status} {self.overall_progress}%>"
