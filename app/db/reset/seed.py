"""A small, realistic sample for local development: `init_db --seed` loads it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    Analyst,
    CollectionJob,
    CollectionJobAttempt,
    CollectionType,
    CollectionWorker,
    DataCollectionLog,
    JobStatus,
)
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
    # Work for the demo worker (python -m app.worker app.worker.demo:COLLECTORS): jobs of
    # uneven sizes, waiting.
    for days, kinds in (
        (7, types[:1]),
        (14, types[:2]),
        (30, [*types, CollectionType.RESEARCH_REPORT]),
    ):
        jobs.append(
            CollectionJob(
                analyst_id=analysts[days % len(analysts)].id,
                collection_types=[t.value for t in kinds],
                start_date=now - timedelta(days=days),
                end_date=now,
            )
        )
    session.add_all(jobs)
    await session.flush()
    # The running job's worker is gone: its attempt stopped heartbeating an hour ago, so a
    # worker rescues it and resumes where each type stopped.
    running = next(job for job in jobs if job.status is JobStatus.RUNNING)
    gone = CollectionWorker(name="seed-worker:0", heartbeat_at=now - timedelta(hours=1))
    session.add(gone)
    await session.flush()
    assert running.started_at is not None
    session.add(
        CollectionJobAttempt(
            collection_job_id=running.id,
            worker_id=gone.id,
            run_started_at=running.started_at,
            heartbeat_at=now - timedelta(hours=1),
        )
    )

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
