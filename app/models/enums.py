"""Value sets stored as VARCHAR (no native ENUM types: adding a value needs no migration)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class AttemptOutcome(StrEnum):
    """How one run of a job (an attempt) ended."""

    COMPLETED = "completed"
    """Its job completed."""
    FAILED = "failed"
    """Its job failed: a collector's final error, a bug, or an operator's `fail`."""
    CANCELLED = "cancelled"
    """Its job was cancelled."""
    RELEASED = "released"
    """Handed back with its progress (shutdown, a cut-off worker, an operator's requeue):
    not counted as lost."""
    LOST = "lost"
    """Its heartbeats stopped; the rescue requeued the job (or failed it at the cap)."""


class LogStatus(StrEnum):
    SUCCESS = "success"
    PARTIAL = "partial"
    FAILED = "failed"


class CollectionType(StrEnum):
    """The kinds of data the platform collects; the one list every check uses."""

    NEWS = "news"
    DISCLOSURE = "disclosure"
    STOCK_PRICE = "stock_price"
    FINANCIAL_STATEMENT = "financial_statement"
    RESEARCH_REPORT = "research_report"


class StrEnumType(TypeDecorator[StrEnum]):
    """A StrEnum kept in VARCHAR(length): checked in Python, plain text in the database."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[StrEnum], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        try:
            return self.enum(value).value
        except ValueError:
            allowed = ", ".join(m.value for m in self.enum)
            raise ValueError(
                f"{value!r} is not a valid {self.enum.__name__} (one of: {allowed})"
            ) from None

    def process_result_value(self, value: Any, dialect: Dialect) -> StrEnum | None:
        return None if value is None else self.enum(value)
