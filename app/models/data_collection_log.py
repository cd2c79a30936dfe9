"""Collection logs written by workers; older rows predate jobs and keep a NULL job."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import TIMESTAMPTZ, Base, CreatedAt, UUIDPrimaryKey
from app.models.enums import LogStatus, StrEnumType

if TYPE_CHECKING:
    from app.models.analyst import Analyst
    from app.models.collection_job import CollectionJob


class DataCollectionLog(UUIDPrimaryKey, CreatedAt, Base):
    __tablename__ = "data_collection_logs"

    analyst_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("analysts.id"), index=True
    )
    collection_type: Mapped[str] = mapped_column(String(50))
    status: Mapped[LogStatus] = mapped_column(StrEnumType(LogStatus, 20))
    records_collected: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(TIMESTAMPTZ)
    completed_at: Mapped[datetime | None] = mapped_column(TIMESTAMPTZ)
    collection_job_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("collection_jobs.id"), index=True, sort_order=100
    )
    """Added by the collection-jobs migration (`ALTER TABLE ... ADD COLUMN`), hence last."""

    analyst: Mapped[Analyst] = relationship(back_populates="collection_logs", lazy="raise")
    job: Mapped[CollectionJob | None] = relationship(back_populates="logs", lazy="raise")

    def __repr__(self) -> str:
        return f"<DataCollectionLog {self.id} {self.collection_type} {self.status}>"
