"""What the worker tests share: a database of their own with a few ways to look into it,
fast worker settings, and a worker process started the way an operator would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable

from sqlalchemy import func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.engine import create_engine, create_sessionmaker, session_scope
from app.db.reset import init_db
from app.db.settings import Environment
from app.models import CollectionJob, CollectionJobAttempt, DataCollectionLog, JobStatus
from app.testing.factories import make_analyst, make_pending_job
from app.worker import Worker, WorkerSettings
from tests.helpers.tools import url_env

FAST = WorkerSettings(poll_interval=0.2, heartbeat_seconds=0.3, rescue_timeout=1.5, retries=1)


class Database:
    def __init__(self, url: URL, engine: AsyncEngine) -> None:
        self.url, self.engine = url, engine
        self.sessions: async_sessionmaker[AsyncSession] = create_sessionmaker(engine)

    async def new_jobs(self, count: int, types: list[str]) -> list[uuid.UUID]:
        async with session_scope(self.sessions) as session:
            analyst = await make_analyst(session, name="작업자")
            made = [
                await make_pending_job(session, analyst.id, types, days=3) for _ in range(count)
            ]
        return [job.id for job in made]

    async def job(self, job_id: uuid.UUID) -> CollectionJob:
        async with self.sessions() as session:
            return await session.get_one(CollectionJob, job_id)

    async def count_logs(self) -> int:
        async with self.sessions() as session:
            return int(
                await session.scalar(select(func.count()).select_from(DataCollectionLog)) or 0
            )

    async def attempts(self, job_id: uuid.UUID) -> list[CollectionJobAttempt]:
        async with self.sessions() as session:
            rows = await session.scalars(
                select(CollectionJobAttempt)
                .where(CollectionJobAttempt.collection_job_id == job_id)
                .order_by(CollectionJobAttempt.run_started_at)
            )
            return list(rows)


@contextlib.asynccontextmanager
async def working(worker: Worker) -> AsyncIterator[None]:
    """`worker` runs in this process for the block; then it stops at once (two stops: its
    running jobs are handed back) and the block waits for it to finish."""
    running = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        worker.stop()
        worker.stop()
        await asyncio.wait_for(running, 20)


@contextlib.asynccontextmanager
async def restartable_database() -> AsyncIterator[tuple[Database, Callable[..., None]]]:
    """A throwaway server with the schema, and its `restart(down_for=0.0)`."""
    from tests.helpers.password_server import restartable_server

    with restartable_server() as (admin, restart):
        url = admin.set(database="postgres")
        engine = create_engine(url, null_pool=True)
        try:
            await init_db(engine, environment=Environment.TEST)
            yield Database(url, engine), restart
        finally:
            await engine.dispose()


STARTED: list[subprocess.Popen[str]] = []
"""Worker processes the running test started; `conftest.py` kills any left at its end, so a
failing test never leaves one behind."""


def start_worker(
    url: URL, *extra: str, collectors: str = "STEADY", env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        **url_env(url),
        "COLLECTOR_STEP_SECONDS": "0.3",
        "PYTHONPATH": str(os.getcwd()),
        **(env or {}),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.worker",
            f"tests.worker_collectors:{collectors}",
            "--heartbeat",
            "0.3",
            "--rescue-timeout",
            "1.5",
            "--poll-interval",
            "0.2",
            *extra,
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    STARTED.append(process)
    return process


async def started(process: subprocess.Popen[str], seconds: float = 60) -> str:
    """Wait until a worker process says it has started (and installed its signal
    handlers); what it wrote until then. A fixed sleep would race a slow start."""
    assert process.stdout is not None
    before = ""
    while "started: collects" not in before:
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), seconds)
        assert line, f"the worker ended before it started:\n{before}"
        before += line
    return before


async def wait_until_all_completed(db: Database, seconds: float) -> int:
    """Wait until every job of the database is completed; how many are not (0 on time)."""
    deadline = time.monotonic() + seconds
    while True:
        async with db.sessions() as session:
            left = await session.scalar(
                select(func.count())
                .select_from(CollectionJob)
                .where(CollectionJob.status != JobStatus.COMPLETED)
            )
        if left == 0 or time.monotonic() > deadline:
            return int(left or 0)
        await asyncio.sleep(0.05)


async def wait_for_progress(db: Database, job_id: uuid.UUID, at_least: float) -> None:
    for _ in range(200):
        job = await db.job(job_id)
        if job.overall_progress is not None and float(job.overall_progress) >= at_least:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no progress: {job.status} {job.overall_progress}")


async def wait_for_backends(
    db: Database, application_name: str, *, on_a_lock: bool = False, seconds: float = 10
) -> list[int]:
    """The pids of the database's server processes of `application_name` (only those
    waiting on a lock, with `on_a_lock`), once there is one."""
    query = text(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = :name AND (NOT :on_a_lock OR wait_event_type = 'Lock')"
    )
    deadline = time.monotonic() + seconds
    while True:
        async with db.engine.connect() as conn:
            pids = list(
                await conn.scalars(query, {"name": application_name, "on_a_lock": on_a_lock})
            )
        if pids:
            return pids
        if time.monotonic() > deadline:
            raise AssertionError(f"no {application_name} backend after {seconds}s")
        await asyncio.sleep(0.05)
