"""A small, realistic sample for local development: `init_db --seed` loads it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Analyst, CollectionJob, CollectionType, DataCollectionLog, JobStatus
from app.models.enums import LogStatus

_ANALYSTS = [
    ("kim.minji@example.com", "김민지"),
    ("lee.junho@example.com", "이준호"),
    ("park.soyeon@example.com", "박소연"),
]


async def load_sample(session: AsyncSession) -> dict[str, int]:
    """Analysts, one job in every status with plausible progress, logs with and without a job.

    Flushes, never commits: the caller's transaction decides.
    """
    now = datetime.now(UTC)
    analysts = [Analyst(email=email, name=name) for email, name in _ANALYSTS]
    session.add_all(analysts)
    await session.flush()

    types = [CollectionType.NEWS, CollectionType.DISCLOSURE, CollectionType.STOCK_PRICE]
    jobs: list[CollectionJob] = []
    for i, status in enumerate(JobStatus):
        progress = {
            JobStatus.PENDING: {},
            JobStatus.RUNNING: {"news": 80.0, "disclosure": 35.5},
            JobStatus.COMPLETED: {t.value: 100.0 for t in types},
            JobStatus.FAILED: {"news": 100.0, "disclosure": 12.0},
            JobStatus.CANCELLED: {"news": 20.0},
        }[status]
        overall = sum(progress.values()) / len(types)
        started = None if status is JobStatus.PENDING else now - timedelta(hours=i + 1)
        finished = status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
        jobs.append(
            CollectionJob(
                analyst_id=analysts[i % len(analysts)].id,
                collection_types=[t.value for t in types],
                start_date=now - timedelta(days=30),
                end_date=now - timedelta(days=1),
                status=status,
                progress=progress,
                overall_progress=f"{overall:.1f}",
                started_at=started,
                completed_at=now - timedelta(minutes=5) if finished else None,
                estimated_completion_time=(
                    now + timedelta(minutes=40) if status is JobStatus.RUNNING else None
                ),
                error_message=(
                    "disclosure source timed out after 3 retries"
                    if status is JobStatus.FAILED
                    else None
                ),
            )
        )
    session.add_all(jobs)
    await session.flush()

    logs = [
        DataCollectionLog(
            analyst_id=job.analyst_id,
            collection_job_id=job.id,
            collection_type=kind,
            status=LogStatus.SUCCESS if pct >= 100 else LogStatus.PARTIAL,
            records_collected=int(pct * 12),
            message=f"{kind}: {pct:.1f}% collected",
            started_at=job.started_at,
            completed_at=job.completed_at,
        )
        for job in jobs
        for kind, pct in (job.progress or {}).items()
    ]
    # Logs from before collection jobs existed: no job, as the guide says old rows keep.
    logs += [
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
    session.add_all(logs)
    await session.flush()
    return {
        "analysts": len(analysts),
        "collection_jobs": len(jobs),
        "data_collection_logs": len(logs),
    }
