"""What the job service's modules share: the tables, the executor type, the clock."""

from __future__ import annotations

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models import Base, CollectionJob, DataCollectionLog

Executor = AsyncSession | AsyncConnection
"""Where the one-statement worker calls run: a session inside the caller's unit of work, or
a connection in autocommit mode, where each call is its own transaction and costs one
round trip instead of three (BEGIN, the statement, COMMIT)."""

JOBS = Base.metadata.tables[CollectionJob.__tablename__]
LOGS = Base.metadata.tables[DataCollectionLog.__tablename__]
"""The tables, for the statements that need no ORM objects back (the fast paths)."""

now = func.statement_timestamp
"""The time of the statement: the same instant `updated_at` gets on every update."""
