"""Models on a real server: defaults filled by PostgreSQL, relationships, enums."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError, InvalidRequestError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.models import CollectionJob, DataCollectionLog, JobStatus
from app.testing.factories import make_analyst, make_job, make_log


async def test_server_fills_the_defaults(session: AsyncSession) -> None:
    analyst = await make_analyst(session)
    job = await make_job(session, analyst)

    assert isinstance(job.id, uuid.UUID)
    assert job.status is JobStatus.PENDING
    assert job.progress == {}
    assert job.overall_progress == "0.0"
    assert job.overall_progress_percent == 0.0
    assert job.created_at.tzinfo is not None
    assert job.updated_at == job.created_at
    assert job.started_at is None and job.error_message is None


async def test_rows_inserted_with_plain_sql_get_the_same_defaults(session: AsyncSession) -> None:
    analyst = await make_analyst(session)
    row = (
        await session.execute(
            text(
                "INSERT INTO collection_jobs (analyst_id, collection_types, start_date, end_date) "
                "VALUES (:a, ARRAY['news'], now(), now()) "
                "RETURNING status, progress, overall_progress"
            ),
            {"a": analyst.id},
        )
    ).one()
    assert tuple(row) == ("pending", {}, "0.0")


async def test_updated_at_moves_on_every_update(session: AsyncSession) -> None:
    job = await make_job(session, await make_analyst(session))
    first = job.updated_at

    job.error_message = "retrying"
    await session.flush()
    second = job.updated_at
    assert second > first

    await session.execute(
        update(CollectionJob).where(CollectionJob.id == job.id).values(status=JobStatus.RUNNING)
    )
    third = (
        await session.execute(select(CollectionJob.updated_at).where(CollectionJob.id == job.id))
    ).scalar_one()
    assert third > second
    assert job.created_at == first


async def test_relationships_load_only_when_asked(session: AsyncSession) -> None:
    analyst = await make_analyst(session)
    job = await make_job(session, analyst)
    await make_log(session, analyst, job)
    await make_log(session, analyst, job)
    session.expunge_all()

    loaded = (
        await session.execute(select(CollectionJob).where(CollectionJob.id == job.id))
    ).scalar_one()
    with pytest.raises(InvalidRequestError, match="lazy='raise'"):
        _ = loaded.logs

    session.expunge_all()
    loaded = (
        await session.execute(
            select(CollectionJob)
            .where(CollectionJob.id == job.id)
            .options(selectinload(CollectionJob.logs), selectinload(CollectionJob.analyst))
        )
    ).scalar_one()
    assert len(loaded.logs) == 2
    assert loaded.analyst.id == analyst.id
    assert all(log.collection_job_id == job.id for log in loaded.logs)


async def test_refresh_loads_a_relationship_explicitly(session: AsyncSession) -> None:
    analyst = await make_analyst(session)
    job = await make_job(session, analyst)
    await make_log(session, analyst, job)
    session.expunge_all()
    log = (await session.execute(select(DataCollectionLog))).scalars().first()
    assert log is not None
    with pytest.raises(InvalidRequestError):
        _ = log.job
    await session.refresh(log, ["job"])
    assert log.job is not None and log.job.id == job.id


async def test_a_log_may_have_no_job(session: AsyncSession) -> None:
    log = await make_log(session, await make_analyst(session))
    assert log.collection_job_id is None
    assert log.records_collected == 0


async def test_status_rejects_values_outside_the_enum(session: AsyncSession) -> None:
    analyst = await make_analyst(session)
    with pytest.raises(StatementError, match="'paused' is not a valid JobStatus"):
        await make_job(session, analyst, status="paused")


async def test_foreign_key_rejects_an_unknown_job(session: AsyncSession) -> None:
    analyst = await make_analyst(session)
    with pytest.raises(IntegrityError, match="data_collection_logs_collection_job_id_fkey"):
        await make_log(session, analyst, collection_job_id=uuid.uuid4())
