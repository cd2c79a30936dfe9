"""A small, realistic sample for local development: `init_db --seed` loads it.

Every job gets its status the way a real one does, through the job service (created,
claimed with its attempt by a worker, reported on, completed, failed or cancelled): the
sample never holds a state the service could not have made.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Analyst, CollectionJob, CollectionType, DataCollectionLog, JobStatus
from app.models.enums import LogStatus
from app.services import collection_jobs as service

_ANALYSTS = [
    ("kim.minji@example.com", "김민지"),
    ("lee.junho@example.com", "이준호"),
    ("park.soyeon@example.com", "박소연"),
]


async def load_sample(session: AsyncSession) -> dict[str, int]:
    """Analysts, one job in every status with plausible progress, logs with and without a
    job, and work for the demo worker. The running job's worker (`seed-worker:0`) never
    heartbeats: a worker rescues that job once the rescue timeout has passed and resumes
    each type where it stopped.

    Flushes, never commits: the caller's transaction decides.
    """
    now = datetime.now(UTC)
    analysts = [Analyst(email=email, name=name) for email, name in _ANALYSTS]
    session.add_all(analysts)
    await session.flush()
    gone = await service.register_worker(session, "seed-worker:0")

    types = [CollectionType.NEWS, CollectionType.DISCLOSURE, CollectionType.STOCK_PRICE]
    jobs: list[CollectionJob] = []
    logs = 0
    for i, status in enumerate(JobStatus):
        progress = {
            JobStatus.PENDING: {},
            JobStatus.RUNNING: {"news": 80.0, "disclosure": 35.5},
            JobStatus.COMPLETED: {t.value: 100.0 for t in types},
            JobStatus.FAILED: {"news": 100.0, "disclosure": 12.0},
            JobStatus.CANCELLED: {"news": 20.0},
        }[status]
        job = await service.create_job(
            session,
            analyst_id=analysts[i % len(analysts)].id,
            collection_types=types,
            start_date=now - timedelta(days=30),
            end_date=now - timedelta(days=1),
        )
        if status is not JobStatus.PENDING:
            await service.start_job(session, job.id, worker_id=gone)
        for kind, percent in progress.items():
            await service.report_progress(session, job.id, kind, percent)
        logs += await service.add_job_logs(
            session,
            job.id,
            [
                service.LogEntry(
                    kind,
                    LogStatus.SUCCESS if percent >= 100 else LogStatus.PARTIAL,
                    int(percent * 12),
                    f"{kind}: {percent:.1f}% collected",
                )
                for kind, percent in progress.items()
            ],
        )
        if status is JobStatus.COMPLETED:
            job = await service.complete_job(session, job.id)
        elif status is JobStatus.FAILED:
            job = await service.fail_job(
                session, job.id, "disclosure source timed out after 3 retries"
            )
        elif status is JobStatus.CANCELLED:
            job = await service.cancel_job(session, job.id)
        jobs.append(job)
    # Work for the demo worker (python -m app.worker app.worker.demo:COLLECTORS): jobs of
    # uneven sizes, waiting.
    for days, kinds in (
        (7, types[:1]),
        (14, types[:2]),
        (30, [*types, CollectionType.RESEARCH_REPORT]),
    ):
        jobs.append(
            await service.create_job(
                session,
                analyst_id=analysts[days % len(analysts)].id,
                collection_types=kinds,
                start_date=now - timedelta(days=days),
                end_date=now,
            )
        )

    # Logs from before collection jobs existed: no job, as the guide says old rows keep.
    legacy = [
        DataCollectionLog(
            analyst_id=analysts[0].id,
            collection_type=CollectionType.NEWS.value,
            status=LogStatus.SUCCESS,
            records_collected=240,
            message="legacy manual collection",
            started_at=now - timedelta(days=60),
            completed_at=now - timedelta(days=60, minutes=-3),
        ),
        DataCollectionLog(
            analyst_id=analysts[1].id,
            collection_type=CollectionType.FINANCIAL_STATEMENT.value,
            status=LogStatus.FAILED,
            records_collected=0,
            message="source unavailable",
        ),
    ]
    session.add_all(legacy)
    await session.flush()
    return {
        "analysts": len(analysts),
        "collection_jobs": len(jobs),
        "data_collection_logs": logs + len(legacy),
    }
