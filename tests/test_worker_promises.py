"""Each promise of docs/worker.md that had no test that could fail: the unique index, two
rescuers at once, a stuck job logged once, a job that finishes
inside the grace period, a second signal, SIGINT, a collector's own error retried, and at
most four types of a job at once."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from app.db.engine import session_scope
from app.models import JobStatus
from app.services import collection_jobs as jobs
from app.testing.factories import make_analyst, make_pending_job
from app.worker import Worker
from app.worker.job import StuckAction
from tests.helpers.tools import run_tool, url_env
from tests.helpers.workers import (
    FAST,
    Database,
    start_worker,
    started,
    wait_for_progress,
    wait_until_all_completed,
    working,
)
from tests.worker_collectors import AT_ONCE, AT_ONCE_COLLECTORS, FLAKY, FOREVER
from tests.worker_collectors import STEADY as STEADY_COLLECTORS


async def claimed_by_a_gone_worker(db: Database, count: int) -> list[jobs.Claimed]:
    job_ids = await db.new_jobs(count, ["news"])
    async with session_scope(db.sessions) as session:
        gone = await jobs.register_worker(session, "gone")
        return [await jobs.start_job(session, j, worker_id=gone) for j in job_ids]


async def test_the_database_refuses_a_second_live_attempt(db: Database) -> None:
    [claimed] = await claimed_by_a_gone_worker(db, 1)
    with pytest.raises(IntegrityError, match="uq_collection_job_attempts_live_job"):
        async with db.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO collection_job_attempts"
                    " (collection_job_id, worker_id, run_started_at)"
                    " SELECT collection_job_id, worker_id, run_started_at"
                    " FROM collection_job_attempts WHERE id = :id"
                ),
                {"id": claimed.attempt_id},
            )


async def test_two_rescuers_at_once_rescue_each_job_once(db: Database) -> None:
    claimed = await claimed_by_a_gone_worker(db, 20)

    async def rescuer() -> list[object]:
        async with db.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return list(await jobs.rescue(conn, 0.0, 3))

    first, second = await asyncio.gather(rescuer(), rescuer())
    assert sorted(map(str, first + second)) == sorted(str(c.job.id) for c in claimed)
    for one in claimed:
        assert [a.outcome for a in await db.attempts(one.job.id)] == ["lost"]
        assert (await db.job(one.job.id)).status is JobStatus.PENDING


async def test_a_stuck_job_left_running_is_logged_once(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    [job_id] = await db.new_jobs(1, ["news"])
    settings = replace(FAST, stuck_after=0.5, stuck_action=StuckAction.LOG)
    async with working(Worker(db.url, FOREVER, settings)):
        await wait_for_progress(db, job_id, 5)
        await asyncio.sleep(2.5)  # five times stuck_after: logged once, not five times
        assert (await db.job(job_id)).status is JobStatus.RUNNING
    stuck = [r for r in caplog.records if "no progress for" in r.getMessage()]
    assert len(stuck) == 1, [r.getMessage() for r in stuck]


async def test_a_job_that_finishes_inside_the_grace_period_completes(db: Database) -> None:
    [job_id] = await db.new_jobs(1, ["news"])
    worker = start_worker(db.url, "--grace", "30", env={"COLLECTOR_STEP_SECONDS": "0.2"})
    before = await started(worker)
    await wait_for_progress(db, job_id, 30)
    worker.send_signal(signal.SIGTERM)
    output = before + worker.communicate(timeout=30)[0]
    assert worker.returncode == 0, output
    assert (await db.job(job_id)).status is JobStatus.COMPLETED
    assert [a.outcome for a in await db.attempts(job_id)] == ["completed"]


@pytest.mark.parametrize("signals", [(signal.SIGTERM, signal.SIGTERM), (signal.SIGINT,)])
async def test_a_second_signal_or_sigint_hands_back(
    db: Database, signals: tuple[signal.Signals, ...]
) -> None:
    """SIGINT is SIGTERM's twin; a second signal ends the grace period at once."""
    [job_id] = await db.new_jobs(1, ["news"])
    grace = "60" if len(signals) == 2 else "0.2"
    worker = start_worker(db.url, "--grace", grace, env={"COLLECTOR_STEP_SECONDS": "0.5"})
    before = await started(worker)
    await wait_for_progress(db, job_id, 10)
    sent = time.monotonic()
    for signum in signals:
        worker.send_signal(signum)
        await asyncio.sleep(0.1)
    output = before + worker.communicate(timeout=30)[0]
    assert time.monotonic() - sent < 10, output  # not the 60 s grace
    assert worker.returncode == 0, output
    job = await db.job(job_id)
    assert job.status is JobStatus.PENDING and job.progress and job.progress["news"] >= 10
    assert [a.outcome for a in await db.attempts(job_id)] == ["released"]


async def test_a_collectors_own_error_is_retried_with_backoff(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    [job_id] = await db.new_jobs(1, ["news"])
    caplog.set_level(logging.INFO)
    async with working(Worker(db.url, FLAKY, replace(FAST, retries=1, retry_backoff=0.3))):
        assert await wait_until_all_completed(db, 20) == 0
    [retried] = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert "news of job" in retried and "the news source reset the connection" in retried
    delay = float(retried.rsplit("retrying in ", 1)[1].rstrip("s"))
    assert 0.15 <= delay <= 0.45  # the backoff, with its jitter
    assert [a.outcome for a in await db.attempts(job_id)] == ["completed"]


async def test_at_most_four_types_of_a_job_collect_at_once(db: Database) -> None:
    kinds = ["news", "disclosure", "stock_price", "financial_statement", "research_report"]
    [job_id] = await db.new_jobs(1, kinds)
    async with working(Worker(db.url, AT_ONCE_COLLECTORS, FAST)):
        assert await wait_until_all_completed(db, 20) == 0
    assert AT_ONCE[job_id][1] == 4


async def test_a_worker_whose_listening_link_does_not_answer_starts_and_polls(
    db: Database,
) -> None:
    """A LISTEN link that never answers (here a socket nobody serves) is the watcher's to
    retry: the worker starts, polls meanwhile, and runs its jobs."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        settings = replace(
            FAST, poll_interval=0.2, listen_url=db.url.set(host="127.0.0.1", port=port)
        )
        [job_id] = await db.new_jobs(1, ["news"])
        async with working(Worker(db.url, STEADY_COLLECTORS, settings)):
            assert await wait_until_all_completed(db, 20) == 0
    assert [a.outcome for a in await db.attempts(job_id)] == ["completed"]


async def test_a_bug_in_the_claim_stops_the_worker_in_one_line_not_a_backoff(
    db: Database, tmp_path: Path
) -> None:
    """A claim the database refuses for a reason no retry mends (here a column renamed
    under it) is a bug: the worker says so in one line and exits 1, instead of backing off
    for ever as if the database were down."""
    async with db.engine.begin() as conn:
        await conn.execute(
            text("ALTER TABLE collection_job_attempts RENAME COLUMN run_started_at TO run_at")
        )
    result = await asyncio.to_thread(
        run_tool,
        "-m", "app.worker", "tests.worker_collectors:STEADY",
        env={**url_env(db.url), "PYTHONPATH": str(Path.cwd())}, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output and "retrying in" not in output, output
    [last] = result.stderr.strip().splitlines()[-1:]
    assert last.startswith("worker: error: bug: could not claim jobs: [42703]"), output


async def test_a_run_claimed_without_the_worker_hearing_so_is_handed_back_not_lost(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A claim whose reply an outage swallowed leaves a live attempt of this worker that
    it never ran: it hands it back (`released`) and runs the job, where before the rescue
    called it lost."""
    caplog.set_level(logging.INFO)
    worker = Worker(db.url, STEADY_COLLECTORS, replace(FAST, poll_interval=60.0), name="me:1")
    async with working(worker):
        await wait_until_started(caplog)
        async with session_scope(db.sessions) as session:  # as if its claim's reply was lost
            [me] = (await session.execute(text("SELECT id FROM collection_workers"))).scalars()
            job_id = (await make_pending_job(session, (await make_analyst(session)).id)).id
            await jobs.start_job(session, job_id, worker_id=me)  # running when committed
        assert await wait_until_all_completed(db, 20) == 0
    assert [a.outcome for a in await db.attempts(job_id)] == ["released", "completed"]
    assert any("handed back 1 job(s)" in r.getMessage() for r in caplog.records)


async def wait_until_started(caplog: pytest.LogCaptureFixture) -> None:
    for _ in range(400):
        if any("started: collects" in r.getMessage() for r in caplog.records):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the worker did not start")
