"""Wake-up calls for workers: PostgreSQL notifications sent in the caller's transaction.

`pg_notify` is delivered when the transaction commits and dropped if it rolls back, so a
worker that `LISTEN`s hears of a job exactly when the job can be seen, never earlier and
never for a job that was not written. The payload is the job's id.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

JOB_CREATED = "collection_jobs_created"
"""Channel: a pending job was created (payload: its id)."""
JOB_CANCELLED = "collection_jobs_cancelled"
"""Channel: a job was cancelled (payload: its id); its worker stops its collectors."""


async def notify(session: AsyncSession, channel: str, job_id: uuid.UUID) -> None:
    """Queue a notification on `channel` for when the session's transaction commits."""
    await session.execute(select(func.pg_notify(channel, str(job_id))))
