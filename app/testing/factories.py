"""Test data builders: they add and flush, never commit (the test's transaction is rolled back)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Analyst, CollectionJob, CollectionType, DataCollectionLog, LogStatus
from app.services.collection_jobs import (
    Claimed,
    Executor,
    create_job,
    register_worker,
    start_job,
)


async def make_analyst(session: AsyncSession, **fields: Any) -> Analyst:
    analyst = Analyst(
        email=fields.pop("email", f"analyst-{uuid.uuid4().hex[:10]}@example.com"),
        name=fields.pop("name", "테스트 분석가"),
        **fields,
    )
    session.add(analyst)
    await session.flush()
    return analyst


async def make_job(session: AsyncSession, analyst: Analyst, **fields: Any) -> CollectionJob:
    now = datetime.now(UTC)
    job = CollectionJob(
        analyst_id=analyst.id,
        collection_types=fields.pop(
            "collection_types", [CollectionType.NEWS.value, CollectionType.DISCLOSURE.value]
        ),
        start_date=fields.pop("start_date", now - timedelta(days=7)),
        end_date=fields.pop("end_date", now),
        **fields,
    )
    session.add(job)
    await session.flush()
    return job


async def make_log(
    session: AsyncSession, analyst: Analyst, job: CollectionJob | None = None, **fields: Any
) -> DataCollectionLog:
    log = DataCollectionLog(
        analyst_id=analyst.id,
        collection_job_id=fields.pop("collection_job_id", None if job is None else job.id),
        collection_type=fields.pop("collection_type", CollectionType.NEWS.value),
        status=fields.pop("status", LogStatus.SUCCESS),
        **fields,
    )
    session.add(log)
    await session.flush()
    return log


async def make_worker(session: AsyncSession, name: str = "test worker") -> uuid.UUID:
    """A registered worker process (the service's `register_worker`), to start jobs with."""
    return await register_worker(session, name)


async def make_pending_job(
    db: Executor,
    analyst_id: uuid.UUID,
    collection_types: Sequence[CollectionType | str] = ("news",),
    *,
    days: float = 1,
) -> CollectionJob:
    """A pending job of the last `days` days, made as the platform makes one (the
    service's `create_job`), in a session or on a connection in autocommit mode."""
    now = datetime.now(UTC)
    return await create_job(
        db,
        analyst_id=analyst_id,
        collection_types=list(collection_types),
        start_date=now - timedelta(days=days),
        end_date=now,
    )


async def make_claimed_job(
    session: AsyncSession, collection_types: list[CollectionType]
) -> Claimed:
    """A new analyst's job made through the service and started with its attempt by a new
    worker, as the runtime's claim does (flushed, not committed)."""
    analyst = await make_analyst(session)
    job = await make_pending_job(session, analyst.id, collection_types)
    return await start_job(session, job.id, worker_id=await make_worker(session))


async def make_running_job(
    session: AsyncSession, collection_types: list[CollectionType]
) -> CollectionJob:
    """`make_claimed_job`'s job: running, with a live attempt (flushed, not committed)."""
    return (await make_claimed_job(session, collection_types)).job
