"""What the worker runtime keeps beyond the guide's columns: the worker processes and each
attempt to run a job, with their heartbeats. The guide's tables are left as the guide has
them; these two come with a revision of their own."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import TIMESTAMPTZ, Base, UUIDPrimaryKey
from app.models.enums import AttemptOutcome, StrEnumType


class CollectionWorker(UUIDPrimaryKey, Base):
    """One worker process, while it runs and after (`stopped_at`)."""

    __tablename__ = "collection_workers"

    name: Mapped[str] = mapped_column(String(200))
    """`host:pid`, for people reading the table."""
    started_at: Mapped[datetime] = mapped_column(TIMESTAMPTZ, server_default=text("now()"))
    heartbeat_at: Mapped[datetime] = mapped_column(TIMESTAMPTZ, server_default=text("now()"))
    stopped_at: Mapped[datetime | None] = mapped_column(TIMESTAMPTZ)


class CollectionJobAttempt(UUIDPrimaryKey, Base):
    """One run of a job by one worker. At most one is live (not ended) per job: the
    database refuses a second, whatever the workers believe."""

    __tablename__ = "collection_job_attempts"
    __table_args__ = (
        Index(
            "uq_collection_job_attempts_live_job",
            "collection_job_id",
            unique=True,
            postgresql_where=text("ended_at IS NULL"),
        ),
        # The dashboard's last hour of claims (pickup latency) and last day of lost
        # attempts read those alone (revision 2c7e9a4f1b36).
        Index("idx_collection_job_attempts_run_started_at", "run_started_at"),
        Index(
            "idx_collection_job_attempts_lost_ended_at",
            "ended_at",
            postgresql_where=text("outcome = 'lost'"),
        ),
    )

    collection_job_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("collection_jobs.id"), index=True
    )
    worker_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("collection_workers.id"), index=True
    )
    run_started_at: Mapped[datetime] = mapped_column(TIMESTAMPTZ)
    """The job's `started_at` for this run: what every write of the run is fenced to."""
    heartbeat_at: Mapped[datetime] = mapped_column(TIMESTAMPTZ, server_default=text("now()"))
    ended_at: Mapped[datetime | None] = mapped_column(TIMESTAMPTZ)
    outcome: Mapped[AttemptOutcome | None] = mapped_column(StrEnumType(AttemptOutcome, 20))
