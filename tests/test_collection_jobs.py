"""The job lifecycle service on a real server, one rolled-back transaction per test."""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    Analyst,
    Base,
    CollectionJob,
    CollectionJobAttempt,
    CollectionType,
    DataCollectionLog,
    JobStatus,
)
from app.services import collection_jobs as jobs
from app.services.collection_jobs import (
    InvalidTransitionError,
    JobNotFoundError,
    JobNotRunningError,
    JobValidationError,
    LogEntry,
)
from app.services.collection_jobs.common import statement
from app.testing.factories import make_analyst, make_job, make_worker

NOW = datetime.now(UTC)
TWO_TYPES = [CollectionType.NEWS, CollectionType.DISCLOSURE]


async def count(session: AsyncSession, model: type[Any]) -> int:
    return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def start(session: AsyncSession, job_id: uuid.UUID) -> CollectionJob:
    """The job made running with its attempt, by a new worker."""
    return (await jobs.start_job(session, job_id, worker_id=await make_worker(session))).job


async def running_job(session: AsyncSession, **fields: Any) -> CollectionJob:
    job = await make_job(session, await make_analyst(session), **fields)
    return await start(session, job.id)


# --- Create ----------------------------------------------------------------------------------


async def test_create_makes_a_pending_job(session: AsyncSession) -> None:
    analyst = await make_analyst(session)
    job = await jobs.create_job(
        session,
        analyst_id=analyst.id,
        collection_types=["news", CollectionType.STOCK_PRICE],
        start_date=NOW - timedelta(days=30),
        end_date=NOW,
    )
    assert job.status is JobStatus.PENDING
    assert job.collection_types == ["news", "stock_price"]
    assert job.progress == {} and job.overall_progress == "0.0"
    assert job.started_at is None and job.analyst_id == analyst.id
    assert await session.get(CollectionJob, job.id) is job


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"collection_types": []}, "collection_types", "at least 1"),
        ({"collection_types": ["news", "news"]}, "collection_types", "news is listed twice"),
        ({"collection_types": ["news", "weather"]}, "collection_types", "'news'"),
        ({"collection_types": None}, "collection_types", "valid list"),
        ({"start_date": NOW.replace(tzinfo=None)}, "start_date", "timezone"),
        ({"end_date": NOW.replace(tzinfo=None)}, "end_date", "timezone"),
        ({"start_date": NOW, "end_date": NOW - timedelta(seconds=1)}, "end_date", "before"),
        ({"analyst_id": "not-a-uuid"}, "analyst_id", "UUID"),
        ({"analyst_id": uuid.uuid4()}, "analyst_id", "no analyst"),
    ],
)
async def test_create_refuses_bad_input_and_writes_nothing(
    session: AsyncSession, change: dict[str, Any], field: str, words: str
) -> None:
    analyst = await make_analyst(session)
    request: dict[str, Any] = {
        "analyst_id": analyst.id,
        "collection_types": TWO_TYPES,
        "start_date": NOW - timedelta(days=1),
        "end_date": NOW,
    } | change

    with pytest.raises(JobValidationError) as caught:
        await jobs.create_job(session, **request)

    assert caught.value.field == field
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"{field}: ") and "\n" not in str(caught.value)
    assert await count(session, CollectionJob) == 0
    # The transaction is still usable: no statement failed on the server.
    assert await count(session, Analyst) == 1


async def test_a_one_instant_range_is_allowed(session: AsyncSession) -> None:
    analyst = await make_analyst(session)
    job = await jobs.create_job(
        session, analyst_id=analyst.id, collection_types=["news"], start_date=NOW, end_date=NOW
    )
    assert job.start_date == job.end_date


# --- Status machine --------------------------------------------------------------------------

MOVES: dict[str, tuple[Callable[[AsyncSession, uuid.UUID], Awaitable[Any]], JobStatus]] = {
    "start": (start, JobStatus.RUNNING),
    "complete": (jobs.complete_job, JobStatus.COMPLETED),
    "cancel": (jobs.cancel_job, JobStatus.CANCELLED),
    "fail": (lambda s, i: jobs.fail_job(s, i, "boom"), JobStatus.FAILED),
    "requeue": (jobs.requeue_job, JobStatus.PENDING),
    "retry": (jobs.retry_job, JobStatus.PENDING),
}


async def job_in(session: AsyncSession, status: JobStatus) -> CollectionJob:
    """A job brought to `status` through the service, as a worker and an operator would."""
    job = await make_job(session, await make_analyst(session))
    if status is JobStatus.PENDING:
        return job
    if status is JobStatus.CANCELLED:
        return await jobs.cancel_job(session, job.id)
    await start(session, job.id)
    if status is JobStatus.COMPLETED:
        return await jobs.complete_job(session, job.id)
    if status is JobStatus.FAILED:
        return await jobs.fail_job(session, job.id, "boom")
    return job


@pytest.mark.parametrize("source", list(JobStatus))
@pytest.mark.parametrize("move", list(MOVES))
async def test_every_transition_is_allowed_or_refused_as_the_state_machine_says(
    session: AsyncSession, source: JobStatus, move: str
) -> None:
    action, target = MOVES[move]
    job = await job_in(session, source)
    before = (await session.execute(select(CollectionJob.__table__).filter_by(id=job.id))).one()

    if source in jobs.MOVES[move if move != "start" else "claim"].sources:
        moved = await action(session, job.id)
        assert moved.status is target
        assert source in jobs.ALLOWED_FROM[target]
    else:
        with pytest.raises(InvalidTransitionError, match=f"is {source}; it cannot become {target}"):
            await action(session, job.id)
        after = (await session.execute(select(CollectionJob.__table__).filter_by(id=job.id))).one()
        assert after == before


def test_the_state_machine_is_the_issues() -> None:
    pending, running = JobStatus.PENDING, JobStatus.RUNNING
    failed, cancelled = JobStatus.FAILED, JobStatus.CANCELLED
    assert {target: set(sources) for target, sources in jobs.ALLOWED_FROM.items()} == {
        JobStatus.PENDING: {running, failed, cancelled},  # requeue, hand-back, rescue; retry
        JobStatus.RUNNING: {pending},
        JobStatus.COMPLETED: {running},
        JobStatus.FAILED: {pending, running},
        JobStatus.CANCELLED: {pending, running},
    }


async def test_transitions_set_their_times_and_a_completed_job_shows_100(
    session: AsyncSession,
) -> None:
    job = await make_job(session, await make_analyst(session))
    started = await start(session, job.id)
    assert started.started_at is not None and started.completed_at is None
    assert started.updated_at <= started.started_at  # each run of a batch claim its own
    await jobs.report_progress(session, job.id, "news", 30)

    done = await jobs.complete_job(session, job.id)
    assert done.completed_at is not None and done.completed_at >= started.started_at
    assert done.overall_progress == "100.0" and done.overall_progress_percent == 100.0
    assert done.progress == {"news": 100, "disclosure": 100}
    assert done.estimated_completion_time is None


async def test_fail_keeps_500_characters_of_the_message(session: AsyncSession) -> None:
    job = await running_job(session)
    failed = await jobs.fail_job(session, job.id, "가" * 499 + "xyz")
    assert failed.status is JobStatus.FAILED and failed.completed_at is not None
    assert failed.error_message == "가" * 499 + "x"


async def test_a_missing_job_is_reported_as_missing(session: AsyncSession) -> None:
    missing = uuid.uuid4()
    with pytest.raises(JobNotFoundError, match=str(missing)):
        await jobs.cancel_job(session, missing)
    with pytest.raises(JobNotFoundError):
        await jobs.report_progress(session, missing, "news", 1)


# --- Progress --------------------------------------------------------------------------------


async def test_progress_merges_per_type_and_averages_over_all_types(
    session: AsyncSession,
) -> None:
    job = await running_job(session, collection_types=["news", "disclosure", "stock_price"])

    first = await jobs.report_progress(session, job.id, "news", 50)
    assert first.progress == {"news": 50.0}
    assert first.overall_progress == 16.7  # 50 / 3, unreported types count 0

    second = await jobs.report_progress(session, job.id, CollectionType.DISCLOSURE, 25.5)
    assert second.progress == {"news": 50.0, "disclosure": 25.5}
    assert second.overall_progress == 25.2  # 75.5 / 3 = 25.1666...

    await session.refresh(job)
    assert job.overall_progress == "25.2" and job.overall_progress_percent == 25.2
    assert job.progress == {"news": 50, "disclosure": 25.5}


async def test_progress_never_goes_backwards(session: AsyncSession) -> None:
    job = await running_job(session, collection_types=["news"])
    await jobs.report_progress(session, job.id, "news", 60)
    late = await jobs.report_progress(session, job.id, "news", 40)
    assert late.progress == {"news": 60.0} and late.overall_progress == 60.0


async def test_overall_progress_is_text_with_one_decimal_from_0_to_100(
    session: AsyncSession,
) -> None:
    job = await running_job(session, collection_types=["news", "disclosure"])
    await jobs.report_progress(session, job.id, "news", 0)
    assert (await session.scalar(select(CollectionJob.overall_progress))) == "0.0"
    await jobs.report_progress(session, job.id, "news", 100)
    await jobs.report_progress(session, job.id, "disclosure", 99.99)
    assert (await session.scalar(select(CollectionJob.overall_progress))) == "100.0"
    await jobs.report_progress(session, job.id, "disclosure", 100)
    assert (await session.scalar(select(CollectionJob.overall_progress))) == "100.0"


async def test_the_estimate_follows_elapsed_time_and_progress(session: AsyncSession) -> None:
    job = await running_job(session, collection_types=["news"])
    started = datetime.now(UTC) - timedelta(minutes=10)  # not NOW: set when collected
    await session.execute(
        update(CollectionJob).where(CollectionJob.id == job.id).values(started_at=started)
    )

    unknown = await jobs.report_progress(session, job.id, "news", 0)
    assert unknown.estimated_completion_time is None

    quarter = await jobs.report_progress(session, job.id, "news", 25)
    # 25 % after ~10 minutes: done ~40 minutes after the start.
    assert quarter.estimated_completion_time is not None
    expected = started + timedelta(minutes=40)
    assert abs(quarter.estimated_completion_time - expected) < timedelta(seconds=30)


async def test_the_estimate_follows_the_slowest_type_once_every_type_has_begun(
    session: AsyncSession,
) -> None:
    """The job ends with its slowest type: a fast type must not pull the estimate ahead.
    While a type is still at 0 there is no rate for it, and the mean projects."""
    job = await running_job(session, collection_types=["news", "disclosure"])
    started = datetime.now(UTC) - timedelta(minutes=10)
    await session.execute(
        update(CollectionJob).where(CollectionJob.id == job.id).values(started_at=started)
    )
    one_begun = await jobs.report_progress(session, job.id, "news", 50)
    # Mean 25 % after ~10 minutes: ~40 minutes after the start.
    assert one_begun.estimated_completion_time is not None
    assert abs(one_begun.estimated_completion_time - (started + timedelta(minutes=40))) < (
        timedelta(seconds=30)
    )
    both_begun = await jobs.report_progress(session, job.id, "disclosure", 10)
    # The slowest, 10 % after ~10 minutes: ~100 minutes after the start (the mean, 30 %,
    # would say ~33).
    assert both_begun.estimated_completion_time is not None
    assert abs(both_begun.estimated_completion_time - (started + timedelta(minutes=100))) < (
        timedelta(seconds=30)
    )


async def test_a_report_moves_updated_at(session: AsyncSession) -> None:
    job = await running_job(session)
    before = job.updated_at
    await jobs.report_progress(session, job.id, "news", 1)
    after = await session.scalar(select(CollectionJob.updated_at))
    assert after is not None and after > before


@pytest.mark.parametrize(
    ("collection_type", "percent", "field", "words"),
    [
        ("weather", 10, "collection_type", "not a known type"),
        ("stock_price", 10, "collection_type", "not one of this job's types (news, disclosure)"),
        ("news", -0.1, "percent", "between 0 and 100"),
        ("news", 100.5, "percent", "between 0 and 100"),
        ("news", math.nan, "percent", "between 0 and 100"),
        ("news", math.inf, "percent", "between 0 and 100"),
        ("news", "50", "percent", "must be a number, not str"),
        ("news", None, "percent", "must be a number"),
        ("news", True, "percent", "must be a number, not bool"),
    ],
)
async def test_bad_reports_are_refused_and_write_nothing(
    session: AsyncSession, collection_type: str, percent: Any, field: str, words: str
) -> None:
    job = await running_job(session)
    await jobs.report_progress(session, job.id, "news", 10)
    before = (await session.execute(select(CollectionJob.__table__))).one()

    with pytest.raises(JobValidationError) as caught:
        await jobs.report_progress(session, job.id, collection_type, percent)

    assert caught.value.field == field and words in str(caught.value)
    assert (await session.execute(select(CollectionJob.__table__))).one() == before


@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.CANCELLED, JobStatus.COMPLETED])
async def test_a_report_to_a_job_that_is_not_running_tells_the_worker(
    session: AsyncSession, status: JobStatus
) -> None:
    job = await job_in(session, status)
    before = (await session.execute(select(CollectionJob.__table__))).one()

    with pytest.raises(JobNotRunningError) as caught:
        await jobs.report_progress(session, job.id, "news", 10)

    assert caught.value.status is status
    assert f"is {status}" in str(caught.value)
    assert (await session.execute(select(CollectionJob.__table__))).one() == before


async def test_a_report_from_an_earlier_run_of_a_requeued_job_is_refused(
    session: AsyncSession,
) -> None:
    job = await running_job(session)
    old_run = job.started_at
    await jobs.requeue_job(session, job.id)  # requeued ...
    new_run = (await start(session, job.id)).started_at  # ... and started again
    assert new_run != old_run

    with pytest.raises(JobNotRunningError, match="newer run"):
        await jobs.report_progress(session, job.id, "news", 10, run_started_at=old_run)
    report = await jobs.report_progress(session, job.id, "news", 10, run_started_at=new_run)
    assert report.progress == {"news": 10.0}


async def test_nothing_an_earlier_run_writes_lands_logs_completion_or_failure(
    session: AsyncSession,
) -> None:
    job = await running_job(session)
    old_run = job.started_at
    await jobs.requeue_job(session, job.id)  # requeued, and started again by another worker
    new_run = (await start(session, job.id)).started_at
    entries = log_entries(3)

    with pytest.raises(JobNotRunningError, match="newer run"):
        await jobs.add_job_logs(session, job.id, entries, run_started_at=old_run)
    with pytest.raises(JobNotRunningError, match="newer run"):
        await jobs.complete_job(session, job.id, run_started_at=old_run)
    with pytest.raises(JobNotRunningError, match="newer run"):
        await jobs.fail_job(session, job.id, "boom", run_started_at=old_run)
    assert await count(session, DataCollectionLog) == 0
    assert (await session.get_one(CollectionJob, job.id, populate_existing=True)).status is (
        JobStatus.RUNNING
    )

    assert await jobs.add_job_logs(session, job.id, entries, run_started_at=new_run) == 3
    done = await jobs.complete_job(session, job.id, run_started_at=new_run)
    assert done.status is JobStatus.COMPLETED
    with pytest.raises(JobNotRunningError, match="is completed"):  # and nothing after it
        await jobs.add_job_logs(session, job.id, entries, run_started_at=new_run)


# --- Claiming and stalled jobs ---------------------------------------------------------------


async def test_claim_takes_the_oldest_pending_job_and_starts_it(session: AsyncSession) -> None:
    analyst = await make_analyst(session)
    newer = await make_job(session, analyst, created_at=NOW - timedelta(minutes=1))
    oldest = await make_job(session, analyst, created_at=NOW - timedelta(minutes=5))
    await make_job(session, analyst, created_at=NOW - timedelta(minutes=9), status="cancelled")

    worker = await make_worker(session)
    first = await jobs.claim_next_job(session, worker_id=worker)
    second = await jobs.claim_next_job(session, worker_id=worker)

    assert first is not None and second is not None
    assert (first.job.id, second.job.id) == (oldest.id, newer.id)
    assert first.job.status is JobStatus.RUNNING and first.job.started_at is not None
    attempt = await session.get_one(CollectionJobAttempt, first.attempt_id)
    assert (attempt.worker_id, attempt.run_started_at) == (worker, first.job.started_at)
    assert attempt.ended_at is None  # live: rescued if nobody heartbeats it
    assert await jobs.claim_next_job(session, worker_id=worker) is None


async def make_stalled(session: AsyncSession, idle: timedelta, **fields: Any) -> CollectionJob:
    job = await running_job(session, **fields)
    await jobs.report_progress(session, job.id, "news", 40)
    await session.execute(
        update(CollectionJob)
        .where(CollectionJob.id == job.id)
        .values(updated_at=func.statement_timestamp() - idle)
    )
    return job


async def test_stalled_jobs_are_listed_failed_or_requeued(session: AsyncSession) -> None:
    stalled = await make_stalled(session, timedelta(minutes=20))
    fresh = await make_stalled(session, timedelta(minutes=2))
    await job_in(session, JobStatus.PENDING)

    listed = await jobs.list_stalled_jobs(session, timedelta(minutes=10))
    assert [job.id for job in listed] == [stalled.id]

    requeued = await jobs.requeue_stalled_jobs(session, timedelta(minutes=10))
    assert [job.id for job in requeued] == [stalled.id]
    job = requeued[0]
    assert job.status is JobStatus.PENDING and job.started_at is None
    assert job.progress == {"news": 40.0} and job.overall_progress == "20.0"  # resumed later
    assert job.estimated_completion_time is None

    failed = await jobs.fail_stalled_jobs(session, timedelta(minutes=1))
    assert [job.id for job in failed] == [fresh.id]
    assert failed[0].status is JobStatus.FAILED
    assert failed[0].error_message == "no progress reported for 0:01:00"
    assert failed[0].completed_at is not None
    assert await jobs.list_stalled_jobs(session, timedelta(seconds=1)) == []


@pytest.mark.parametrize("stalled_for", [timedelta(0), timedelta(seconds=-5), 600])
async def test_stalled_needs_a_positive_duration(session: AsyncSession, stalled_for: Any) -> None:
    with pytest.raises(JobValidationError, match="stalled_for: must be a positive timedelta"):
        await jobs.fail_stalled_jobs(session, stalled_for)


# --- Logs and listings -----------------------------------------------------------------------


def log_entries(n: int) -> list[LogEntry]:
    return [
        LogEntry(
            collection_type="news" if i % 2 else CollectionType.DISCLOSURE,
            status="success" if i % 3 else "partial",
            records_collected=i,
            message=None if i % 5 else f"배치 {i}",
            started_at=NOW - timedelta(seconds=n - i),
            completed_at=NOW,
        )
        for i in range(n)
    ]


async def test_logs_are_written_in_bulk_and_listed_a_page_at_a_time(
    session: AsyncSession,
) -> None:
    job = await running_job(session)
    other = await running_job(session)
    await jobs.add_job_logs(session, other.id, log_entries(3))

    written = await jobs.add_job_logs(session, job.id, log_entries(2500))
    assert written == 2500

    seen: list[DataCollectionLog] = []
    cursor = None
    while True:
        page = await jobs.list_job_logs(session, job.id, limit=1000, after=cursor)
        seen.extend(page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == 2500 == len({log.id for log in seen})
    assert {log.collection_job_id for log in seen} == {job.id}
    assert {log.analyst_id for log in seen} == {job.analyst_id}
    assert sorted(log.records_collected for log in seen) == list(range(2500))
    by_records = {log.records_collected: log for log in seen}
    assert by_records[10].message == "배치 10" and by_records[11].message is None
    assert by_records[3].status == "partial" and by_records[3].collection_type == "news"
    assert by_records[0].started_at == NOW - timedelta(seconds=2500)


async def test_one_bad_log_entry_writes_nothing(session: AsyncSession) -> None:
    job = await running_job(session)
    entries = [*log_entries(10), LogEntry("news", "exploded"), *log_entries(2)]

    with pytest.raises(JobValidationError, match=r"entries\[10\]\.status: 'exploded'"):
        await jobs.add_job_logs(session, job.id, entries)

    assert await count(session, DataCollectionLog) == 0


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        (LogEntry("weather", "success"), "collection_type"),
        (LogEntry("news", "success", records_collected=-1), "records_collected"),
        (LogEntry("news", "success", records_collected=2**31), "records_collected"),
        (LogEntry("news", "success", records_collected=1.5), "records_collected"),  # type: ignore[arg-type]
        (LogEntry("news", "success", started_at=NOW.replace(tzinfo=None)), "started_at"),
        (LogEntry("news", "success", completed_at="today"), "completed_at"),  # type: ignore[arg-type]
    ],
)
async def test_log_entries_are_checked_field_by_field(
    session: AsyncSession, entry: LogEntry, field: str
) -> None:
    job = await running_job(session)
    with pytest.raises(JobValidationError) as caught:
        await jobs.add_job_logs(session, job.id, [entry])
    assert caught.value.field == f"entries[0].{field}"


async def test_logs_for_a_missing_job_write_nothing(session: AsyncSession) -> None:
    with pytest.raises(JobNotFoundError):
        await jobs.add_job_logs(session, uuid.uuid4(), log_entries(3))
    assert await count(session, DataCollectionLog) == 0
    assert await jobs.add_job_logs(session, uuid.uuid4(), []) == 0


async def newest_first_jobs(session: AsyncSession, analyst: Analyst) -> list[CollectionJob]:
    """Seven jobs of `analyst`, newest first, completed and pending by turns."""
    return [
        await make_job(
            session,
            analyst,
            created_at=NOW - timedelta(minutes=i),
            status="completed" if i % 2 else "pending",
        )
        for i in range(7)
    ]


async def test_an_analysts_jobs_newest_first_by_status_in_pages(session: AsyncSession) -> None:
    analyst = await make_analyst(session)
    someone_else = await make_analyst(session)
    await make_job(session, someone_else)
    made = await newest_first_jobs(session, analyst)

    every = await jobs.list_analyst_jobs(session, analyst.id)
    assert [job.id for job in every.items] == [job.id for job in made]
    assert every.next_cursor is None

    completed = [job.id for job in made if job.status == "completed"]
    first = await jobs.list_analyst_jobs(session, analyst.id, status="completed", limit=2)
    assert [job.id for job in first.items] == completed[:2] and first.next_cursor is not None
    rest = await jobs.list_analyst_jobs(
        session, analyst.id, status=JobStatus.COMPLETED, limit=2, before=first.next_cursor
    )
    assert [job.id for job in rest.items] == completed[2:4] and rest.next_cursor is None

    several = await jobs.list_analyst_jobs(
        session, analyst.id, status=[JobStatus.PENDING, JobStatus.RUNNING]
    )
    assert len(several.items) == 4


async def test_a_cursor_carries_its_filter_and_the_next_page_never_starts_over(
    session: AsyncSession,
) -> None:
    analyst = await make_analyst(session)
    made = await newest_first_jobs(session, analyst)
    completed = [job.id for job in made if job.status == "completed"]

    first = await jobs.list_analyst_jobs(session, analyst.id, status="completed", limit=2)
    # Passed back without the filter, the cursor continues the filtered listing.
    second = await jobs.list_analyst_jobs(session, analyst.id, before=first.next_cursor)
    assert [job.id for job in second.items] == completed[2:3]
    # next_page: the same listing, then an empty last page, never the first page again.
    pages = [first]
    while not pages[-1].is_last:
        pages.append(await jobs.next_page(session, pages[-1]))
    assert [job.id for page in pages for job in page.items] == completed
    after_the_end = await jobs.next_page(session, pages[-1])
    assert after_the_end.items == [] and after_the_end.is_last
    # A cursor of another listing is refused, never mixed in.
    with pytest.raises(JobValidationError, match="before: is the cursor of another listing"):
        await jobs.list_analyst_jobs(
            session, analyst.id, status="pending", before=first.next_cursor
        )
    other = await make_analyst(session)
    with pytest.raises(JobValidationError, match="another listing"):
        await jobs.list_analyst_jobs(session, other.id, before=first.next_cursor)


async def test_next_page_of_a_jobs_logs(session: AsyncSession) -> None:
    job = await running_job(session)
    await jobs.add_job_logs(session, job.id, log_entries(5))
    page = await jobs.list_job_logs(session, job.id, limit=2)
    seen = list(page.items)
    while not page.is_last:
        page = await jobs.next_page(session, page)
        seen.extend(page.items)
    assert sorted(log.records_collected for log in seen) == list(range(5))
    other = await running_job(session)
    first = await jobs.list_job_logs(session, job.id, limit=2)
    with pytest.raises(JobValidationError, match="after: is the cursor of another listing"):
        await jobs.list_job_logs(session, other.id, after=first.next_cursor)


@pytest.mark.parametrize("limit", [0, -1, 1001, True])
async def test_page_size_is_checked(session: AsyncSession, limit: int) -> None:
    with pytest.raises(JobValidationError, match="limit: must be an integer from 1 to 1000"):
        await jobs.list_analyst_jobs(session, uuid.uuid4(), limit=limit)


async def test_an_unknown_status_filter_is_refused(session: AsyncSession) -> None:
    with pytest.raises(JobValidationError, match="status: 'paused' is not a known status"):
        await jobs.list_analyst_jobs(session, uuid.uuid4(), status="paused")


# --- Hostile input: the service's own error, before any SQL; the transaction stays usable --


async def still_usable(session: AsyncSession) -> None:
    """An SQL error would have aborted the caller's transaction; a check before SQL did not."""
    assert await session.scalar(select(1)) == 1


NAIVE = datetime(2026, 1, 1, 12, 0)


async def test_ids_that_are_not_uuids_are_refused_before_any_sql(session: AsyncSession) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: jobs.start_job(session, "job-42", worker_id=uuid.uuid4()),
        lambda: jobs.cancel_job(session, 42),  # type: ignore[arg-type]
        lambda: jobs.report_progress(session, "job-42", "news", 10),
        lambda: jobs.add_job_logs(session, "x", [LogEntry("news", "success")]),
        lambda: jobs.list_job_logs(session, "x"),
        lambda: jobs.list_analyst_jobs(session, "x"),
    ]
    for call in calls:
        with pytest.raises(JobValidationError, match="must be a UUID"):
            await call()
        await still_usable(session)
    job = await running_job(session, collection_types=["news"])
    assert (await jobs.report_progress(session, str(job.id), "news", 5)).overall_progress == 5.0


async def test_naive_datetimes_are_refused_everywhere(session: AsyncSession) -> None:
    job = await running_job(session)
    with pytest.raises(JobValidationError) as caught:
        await jobs.report_progress(session, job.id, "news", 5, run_started_at=NAIVE)
    assert caught.value.field == "run_started_at"
    with pytest.raises(JobValidationError, match=r"entries\[0\]\.started_at"):
        await jobs.add_job_logs(session, job.id, [LogEntry("news", "success", started_at=NAIVE)])
    with pytest.raises(JobValidationError, match=r"before\.created_at"):
        await jobs.list_analyst_jobs(session, job.analyst_id, before=jobs.Cursor(NAIVE, job.id))
    await still_usable(session)
    assert await count(session, DataCollectionLog) == 0


@pytest.mark.parametrize(
    "percent",
    [10**400, 1e400, -1e-300, float("-inf"), math.nan],
    ids=["int-beyond-float", "inf", "tiny-negative", "-inf", "nan"],
)
async def test_numbers_out_of_any_range_are_refused(session: AsyncSession, percent: Any) -> None:
    job = await running_job(session)
    with pytest.raises(JobValidationError, match="percent: must be a number between 0 and 100"):
        await jobs.report_progress(session, job.id, "news", percent)
    with pytest.raises(JobValidationError, match="records_collected"):
        await jobs.add_job_logs(session, job.id, [LogEntry("news", "success", 2**31)])
    with pytest.raises(JobValidationError, match="stalled_for"):
        await jobs.fail_stalled_jobs(session, timedelta.max)
    await still_usable(session)


async def test_nul_characters_and_lone_surrogates_are_stored_as_replacement_characters(
    session: AsyncSession,
) -> None:
    job = await running_job(session, collection_types=TWO_TYPES)
    raw = "page 3\x00\x00 of 7 \ud800 end"
    written = await jobs.add_job_logs(
        session, job.id, [LogEntry("news", "success", 1, message=raw)]
    )
    assert written == 1
    logs = (await jobs.list_job_logs(session, job.id)).items
    assert logs[0].message == "page 3\ufffd\ufffd of 7 \ufffd end"
    failed = await jobs.fail_job(session, job.id, "crashed on \x00")
    assert failed.error_message == "crashed on \ufffd"
    stalled = await running_job(session)
    await session.execute(
        update(CollectionJob)
        .where(CollectionJob.id == stalled.id)
        .values(updated_at=func.now() - timedelta(hours=2))
    )
    [gone] = await jobs.fail_stalled_jobs(session, timedelta(hours=1), "no \x00 reports")
    assert gone.error_message == "no \ufffd reports"


async def test_log_entries_must_be_log_entries_of_the_jobs_types_in_time_order(
    session: AsyncSession,
) -> None:
    job = await running_job(session, collection_types=["news"])
    good = LogEntry("news", "success")
    cases: list[tuple[Any, str]] = [
        (
            [good, {"collection_type": "news", "status": "success"}],
            r"entries\[1\]: must be a LogEntry",
        ),
        ("news", "entries: must be a sequence"),
        (
            [LogEntry("news", "success", started_at=NOW, completed_at=NOW - timedelta(seconds=1))],
            r"entries\[0\]\.completed_at: must not be before started_at",
        ),
        (
            [good, LogEntry("disclosure", "success")],
            r"entries\[1\]\.collection_type: disclosure is not one of this job's types",
        ),
    ]
    for entries, message in cases:
        with pytest.raises(JobValidationError, match=message):
            await jobs.add_job_logs(session, job.id, entries)
        await still_usable(session)
    assert await count(session, DataCollectionLog) == 0


async def test_a_tiny_first_report_long_after_the_start_is_recorded_without_an_estimate(
    session: AsyncSession,
) -> None:
    job = await running_job(session, collection_types=["news"])
    await session.execute(
        update(CollectionJob)
        .where(CollectionJob.id == job.id)
        .values(started_at=datetime.now(UTC) - timedelta(days=1))
    )
    report = await jobs.report_progress(session, job.id, "news", 1e-6)
    assert report.progress == {"news": 1e-6}
    assert report.estimated_completion_time is None  # ~274,000 years away: no estimate
    report = await jobs.report_progress(session, job.id, "news", 50)
    assert report.estimated_completion_time is not None  # two days: a real estimate


def test_a_statement_for_the_driver_refuses_what_only_sqlalchemy_can_bind() -> None:
    """The driver's form skips SQLAlchemy's per-call work: a list expanded into IN (...) and
    JSON encoded by a bind processor would go wrong there, so they are refused when built."""
    jobs_table = Base.metadata.tables["collection_jobs"]
    with pytest.raises(ValueError, match="cannot bind a list"):
        statement(select(jobs_table.c.id).where(jobs_table.c.status.in_(["pending", "failed"])))
    with pytest.raises(ValueError, match="cannot bind JSON"):
        statement(update(jobs_table).values(progress={"news": 1.0}))


async def test_a_claim_that_fails_in_a_session_says_why(session: AsyncSession) -> None:
    """The claim's own error reaches the caller (here: a worker that does not exist), not
    one of putting its planner setting back in the failed transaction."""
    await make_job(session, await make_analyst(session))
    with pytest.raises(IntegrityError, match="collection_job_attempts_worker_id_fkey"):
        await jobs.claim_jobs(session, uuid.uuid4(), ["news", "disclosure"], 1)
