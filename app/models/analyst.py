"""Analysts: the platform's users who start collection jobs (exists before the feature)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, Timestamps, UUIDPrimaryKey

if TYPE_CHECKING:
    from app.models.collection_job import CollectionJob
    from app.models.data_collection_log import DataCollectionLog


class Analyst(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "analysts"

    email: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(100))

    collection_jobs: Mapped[list[CollectionJob]] = relationship(
        back_populates="analyst", lazy="raise"
    )
    collection_logs: Mapped[list[DataCollectionLog]] = relationship(
        back_populates="analyst", lazy="raise"
    )

    def __repr__(self) -> str:
        return f"<Analyst {self.id} {self.email!r}>"
