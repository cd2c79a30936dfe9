"""Many workers at once, each on its own connection, with committed data.

Every test runs twice: straight to the server, and through a real PgBouncer in transaction
mode with fewer server connections than clients (skipped when pgbouncer is not installed).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db.engine import autocommit, create_engine, create_pool
from app.db.faults import is_outage
from app.models import CollectionJob, CollectionType, JobStatus
from app.services import collection_jobs as jobs
from app.services.collection_jobs.common import driver_of
from app.testing.databases import CloneFactory
from app.testing.factories import make_analyst, make_pending_job, make_running_job
from tests.helpers.pgbouncer import find_pgbouncer, pgbouncer

CLIENTS = 16


@pytest.fixture(scope="session")
def pgbouncer_url(test_admin_url: URL) -> Iterator[URL]:
    binary = find_pgbouncer()
    if binary is None:
        pytest.skip("pgbouncer is not installed (Debian package pgbouncer)")
    with pgbouncer(binary, test_admin_url) as url:
        yield url


@pytest.fixture(params=["direct", "pgbouncer"])
def route(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def workers(
    request: pytest.FixtureRequest, route: str, database_of_its_own: CloneFactory
) -> AsyncIterator[AsyncEngine]:
    """An engine with a connection for each concurrent client, on a database of the test's
    own: its committed rows go with it."""
    url = await database_of_its_own()
    if route == "pgbouncer":
        through = request.getfixturevalue("pgbouncer_url").set(database=url.database)
        workers = create_engine(
            through, pool_size=CLIENTS, max_overflow=0, disable_prepared_statements=True
        )
    else:
        workers = create_engine(url, pool_size=CLIENTS, max_overflow=0)
    try:
        yield workers
    finally:
        await workers.dispose()


@dataclass
class Worker:
    """A session on a connection of its own for its whole life."""

    engine: AsyncEngine

    async def __aenter__(self) -> AsyncSession:
        self.connection = await self.engine.connect()
        self.session = AsyncSession(bind=self.connection, expire_on_commit=False)
        return self.session

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()
        await self.connection.close()


async def new_job(engine: AsyncEngine, types: list[CollectionType]) -> CollectionJob:
    """A running job, committed."""
    async with Worker(engine) as session:
        job = await make_running_job(session, types)
        await session.commit()
        return job


async def read_job(engine: AsyncEngine, job_id: uuid.UUID) -> CollectionJob:
    async with Worker(engine) as session:
        return (await session.scalars(select(CollectionJob).filter_by(id=job_id))).one()


async def test_concurrent_progress_reports_lose_nothing(workers: AsyncEngine, route: str) -> None:
    types = list(CollectionType)
    job = await new_job(workers, types)
    sent: dict[str, list[float]] = {t.value: [] for t in types}

    async def reporter(number: int) -> None:
        collection_type = types[number % len(types)].value
        # Rising, so every report changes the row; the tasks of a type interleave.
        values = [step * 0.9 + number / 100 for step in range(1, 101)]
        sent[collection_type].extend(values)
        # Half on autocommit connections, each report its own transaction; not through
        # PgBouncer < 1.21, which loses prepared statements between transactions.
        if number % 2 and route == "direct":
            async with workers.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                for value in values:
                    await jobs.report_progress(conn, job.id, collection_type, value)
            return
        async with Worker(workers) as session:  # half in sessions, committing each report
            for value in values:
                await jobs.report_progress(session, job.id, collection_type, value)
                await session.commit()

    await asyncio.gather(*(reporter(n) for n in range(CLIENTS)))

    final = await read_job(workers, job.id)
    # Per type the largest report wins, whatever the order they arrived in. A lost update
    # (a writer's stale JSON over another's) would lose a type's last, largest value.
    expected = {name: max(values) for name, values in sent.items()}
    assert final.progress == pytest.approx(expected)
    assert final.overall_progress == f"{round(sum(expected.values()) / len(types), 1):.1f}"
    assert final.estimated_completion_time is not None
    assert final.updated_at > job.updated_at


async def test_eight_workers_claim_each_of_100_jobs_exactly_once(workers: AsyncEngine) -> None:
    async with Worker(workers) as session:
        analyst = await make_analyst(session, name="큐")
        created = [await make_pending_job(session, analyst.id) for _ in range(100)]
        await session.commit()

    async def worker() -> list[uuid.UUID]:
        claimed = []
        async with Worker(workers) as session:
            worker_id = await jobs.register_worker(session, "claimer")
            while (one := await jobs.claim_next_job(session, worker_id=worker_id)) is not None:
                await session.commit()
                claimed.append(one.job.id)
        return claimed

    claims = await asyncio.gather(*(worker() for _ in range(8)))

    every_claim = [job_id for claimed in claims for job_id in claimed]
    assert len(every_claim) == 100
    assert set(every_claim) == {job.id for job in created}
    async with Worker(workers) as session:
        statuses = (await session.scalars(select(CollectionJob.status))).all()
    assert set(statuses) == {JobStatus.RUNNING}


@dataclass
class Report:
    collection_type: str
    value: float
    began: float
    applied: bool


async def test_a_cancel_racing_with_reports_wins_and_no_report_lands_after_it(
    workers: AsyncEngine,
) -> None:
    types = [CollectionType.NEWS.value, CollectionType.DISCLOSURE.value]
    job = await new_job(workers, [CollectionType(t) for t in types])
    reports: list[Report] = []
    told: list[jobs.JobNotRunningError] = []
    some_landed = asyncio.Event()
    cancelled_at: list[float] = []

    async def reporter(number: int) -> None:
        collection_type = types[number % 2]
        async with Worker(workers) as session:
            for step in range(1, 1001):
                value = step / 10
                began = time.monotonic()
                try:
                    await jobs.report_progress(session, job.id, collection_type, value)
                    await session.commit()
                except jobs.JobNotRunningError as exc:
                    await session.rollback()
                    reports.append(Report(collection_type, value, began, applied=False))
                    told.append(exc)
                    return
                reports.append(Report(collection_type, value, began, applied=True))
                if len(reports) >= 40:
                    some_landed.set()

    async def canceller() -> None:
        await some_landed.wait()
        async with Worker(workers) as session:
            await jobs.cancel_job(session, job.id)
            await session.commit()
        cancelled_at.append(time.monotonic())

    await asyncio.gather(canceller(), *(reporter(n) for n in range(6)))

    final = await read_job(workers, job.id)
    assert final.status is JobStatus.CANCELLED
    # Every worker learned of the cancel on its next report ...
    assert len(told) == 6 and {exc.status for exc in told} == {JobStatus.CANCELLED}
    # ... none that began after the cancel was recorded ...
    assert not [r for r in reports if r.applied and r.began > cancelled_at[0]]
    # ... what is stored is exactly what was acknowledged ...
    applied = [r for r in reports if r.applied]
    assert final.progress == {
        t: max(r.value for r in applied if r.collection_type == t) for t in types
    }
    # ... and the cancel was the last write to the row.
    assert final.updated_at == final.completed_at


@pytest.mark.parametrize("route", ["direct"])  # PgBouncer < 1.21 needs sessions (docs/jobs.md)
async def test_reports_on_an_autocommit_connection_match_reports_in_a_session(
    workers: AsyncEngine,
) -> None:
    job = await new_job(workers, [CollectionType.NEWS, CollectionType.DISCLOSURE])
    async with workers.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        by_connection = await jobs.report_progress(conn, job.id, "news", 30)
        async with Worker(workers) as session:
            by_session = await jobs.report_progress(session, job.id, "news", 30)
            await session.commit()
        assert by_connection.progress == by_session.progress == {"news": 30.0}
        assert by_connection.overall_progress == by_session.overall_progress == 15.0
        assert by_connection.estimated_completion_time is not None

        with pytest.raises(jobs.JobValidationError, match="not one of this job's types"):
            await jobs.report_progress(conn, job.id, "stock_price", 10)
        async with Worker(workers) as session:
            await jobs.cancel_job(session, job.id)
            await session.commit()
        with pytest.raises(jobs.JobNotRunningError, match="is cancelled"):
            await jobs.report_progress(conn, job.id, "news", 40)
    assert (await read_job(workers, job.id)).progress == {"news": 30}


async def test_a_job_that_reports_while_stalled_jobs_are_failed_is_left_alone(
    workers: AsyncEngine,
) -> None:
    job = await new_job(workers, [CollectionType.NEWS])
    async with Worker(workers) as session:  # silent for an hour, as far as anyone can see
        await session.execute(
            update(CollectionJob)
            .where(CollectionJob.id == job.id)
            .values(updated_at=func.statement_timestamp() - timedelta(hours=1))
        )
        await session.commit()

    async with Worker(workers) as reporter, Worker(workers) as reaper:
        await jobs.report_progress(reporter, job.id, "news", 10)  # row locked, not committed
        reaping = asyncio.create_task(jobs.fail_stalled_jobs(reaper, timedelta(minutes=10)))
        await asyncio.sleep(0.3)
        assert not reaping.done()  # it waits for the report's lock ...
        await reporter.commit()
        assert await reaping == []  # ... then sees the fresh updated_at and skips the job
        await reaper.commit()

    final = await read_job(workers, job.id)
    assert final.status is JobStatus.RUNNING and final.progress == {"news": 10}


@asynccontextmanager
async def connection_in_autocommit(
    engine: AsyncEngine, route: str, kind: str
) -> AsyncIterator[jobs.Executor]:
    """A connection each statement of which is its own transaction: the engine's (`autocommit`)
    or a plain one of the worker's pool."""
    if kind == "engine":
        async with autocommit(engine) as conn:
            yield conn
        return
    pool = await create_pool(
        engine.url, size=1, statement_cache_size=0 if route == "pgbouncer" else 100
    )
    try:
        async with pool.acquire() as conn:
            yield conn
    finally:
        await pool.close()


def columns(job: CollectionJob) -> dict[str, object]:
    return {c.name: getattr(job, c.name) for c in CollectionJob.__table__.c}


@pytest.mark.parametrize("kind", ["engine", "worker pool"])
async def test_creating_and_moving_one_job_on_a_connection_in_autocommit(
    workers: AsyncEngine, route: str, kind: str
) -> None:
    """The platform's fast path: each call its own transaction, one round trip through the
    driver; the jobs returned are what is committed, and refusals are the session's."""
    async with Worker(workers) as session:
        analyst = await make_analyst(session)
        await session.commit()
    now = datetime.now(UTC)
    request: dict[str, Any] = {
        "analyst_id": analyst.id,
        "collection_types": [CollectionType.NEWS, CollectionType.DISCLOSURE],
        "start_date": now - timedelta(days=1),
        "end_date": now,
    }
    async with connection_in_autocommit(workers, route, kind) as conn:
        job = await jobs.create_job(conn, **request)
        assert job.status is JobStatus.PENDING and job.progress == {}
        assert columns(job) == columns(await read_job(workers, job.id))  # committed
        with pytest.raises(jobs.JobValidationError, match="no analyst"):
            await jobs.create_job(conn, **request | {"analyst_id": uuid.uuid4()})

        async def moved(action: Any, *args: Any, **kwargs: Any) -> CollectionJob:
            job: CollectionJob = await action(conn, *args, **kwargs)
            assert columns(job) == columns(await read_job(workers, job.id))
            return job

        cancelled = await moved(jobs.cancel_job, job.id)
        assert cancelled.status is JobStatus.CANCELLED and cancelled.completed_at is not None
        with pytest.raises(jobs.InvalidTransitionError, match="is cancelled"):
            await jobs.cancel_job(conn, job.id)
        with pytest.raises(jobs.JobNotFoundError):
            await jobs.requeue_job(conn, uuid.uuid4())
        await moved(jobs.retry_job, job.id)

        async def run_to(percent: float) -> None:
            async with Worker(workers) as session:
                worker_id = await jobs.register_worker(session, "test")
                await jobs.start_job(session, job.id, worker_id=worker_id)
                await jobs.report_progress(session, job.id, "news", percent)
                await session.commit()

        await run_to(40)
        requeued = await moved(jobs.requeue_job, job.id)
        assert requeued.status is JobStatus.PENDING and requeued.progress == {"news": 40}
        await run_to(60)
        failed = await moved(jobs.fail_job, job.id, "boom")
        assert failed.status is JobStatus.FAILED and failed.error_message == "boom"
        kept = await moved(jobs.retry_job, job.id)
        assert kept.progress == {"news": 60} and kept.error_message is None
        await jobs.cancel_job(conn, job.id)
        cleared = await moved(jobs.retry_job, job.id, keep_progress=False)
        assert cleared.progress == {} and cleared.overall_progress == "0.0"


@pytest.mark.parametrize("kind", ["engine", "worker pool"])
async def test_a_claim_on_a_connection_in_autocommit_leaves_nothing_behind(
    workers: AsyncEngine, route: str, kind: str
) -> None:
    """The claim runs in a transaction of its own with a planner setting of its own: after
    it, and after one that fails, the connection is in no transaction, with the planner's
    own settings, and claims again."""
    async with Worker(workers) as session:
        analyst = await make_analyst(session)
        await session.commit()
    async with connection_in_autocommit(workers, route, kind) as conn:
        driver = await driver_of(conn)
        assert driver is not None

        async def untouched() -> None:
            assert not driver.is_in_transaction()
            assert await driver.fetchval("SHOW enable_sort") == "on"

        for _ in range(2):
            await make_pending_job(conn, analyst.id)
        worker = await jobs.register_worker(conn, "test")
        [claimed] = await jobs.claim_jobs(conn, worker, ["news"], 1)
        await untouched()
        with pytest.raises(asyncpg.ForeignKeyViolationError):  # no such worker
            await jobs.claim_jobs(conn, uuid.uuid4(), ["news"], 1)
        await untouched()
        [again] = await jobs.claim_jobs(conn, worker, ["news"], 1)
        assert again.job.id != claimed.job.id
        await untouched()


async def test_a_claim_cut_off_midway_fails_as_the_outage_it_is(
    database_of_its_own: CloneFactory,
) -> None:
    """The claim's connection dies inside its transaction (here: killed while it waits for
    a lock): the caller gets the lost connection, which it retries as an outage, not an
    error of the clean-up on a connection the pool has taken back."""
    url = await database_of_its_own()
    engine = create_engine(url)
    pool = await create_pool(url, size=1)
    try:
        async with Worker(engine) as session:
            job = await make_pending_job(session, (await make_analyst(session)).id)
            worker = await jobs.register_worker(session, "test")
            await session.commit()
        async with engine.connect() as blocker, pool.acquire() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            await blocker.execute(text("LOCK TABLE collection_jobs IN ACCESS EXCLUSIVE MODE"))
            claim = asyncio.create_task(jobs.claim_jobs(conn, worker, ["news"], 1))
            while not await blocker.scalar(
                text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": pid},
            ):
                await asyncio.sleep(0.02)
            await blocker.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(Exception) as caught:
                await claim
            await blocker.rollback()
        assert is_outage(caught.value), repr(caught.value)
        assert (await read_job(engine, job.id)).status is JobStatus.PENDING
    finally:
        await pool.close()
        await engine.dispose()
