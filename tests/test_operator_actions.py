"""The job's state has one owner: operators' actions beside a real worker process, an
outage that is never a collector's fault, a bug that is never retried as an outage, and no
module but the service writing a job's status or an attempt."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from app.db.engine import session_scope
from app.models import AttemptOutcome, JobStatus
from app.services import collection_jobs as jobs
from app.worker import Worker
from tests.helpers.workers import (
    FAST,
    Database,
    restartable_database,
    start_worker,
    started,
    wait_for_progress,
    wait_until_all_completed,
    working,
)
from tests.worker_collectors import STEADY

Action = Callable[[Database, uuid.UUID], Awaitable[object]]


async def act(db: Database, call: Callable[..., Awaitable[object]], *args: object) -> object:
    async with session_scope(db.sessions) as session:
        return await call(session, *args)


ACTIONS: dict[str, tuple[Action, JobStatus, AttemptOutcome]] = {
    "cancel": (
        lambda db, j: act(db, jobs.cancel_job, j),
        JobStatus.CANCELLED,
        AttemptOutcome.CANCELLED,
    ),
    "requeue": (
        lambda db, j: act(db, jobs.requeue_job, j),
        JobStatus.PENDING,
        AttemptOutcome.RELEASED,
    ),
    "fail": (
        lambda db, j: act(db, jobs.fail_job, j, "stopped by hand"),
        JobStatus.FAILED,
        AttemptOutcome.FAILED,
    ),
}


async def wait_for(check: Callable[[], Awaitable[bool]], seconds: float = 10) -> None:
    for _ in range(int(seconds / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {seconds}s")


class Running:
    """A worker process that has said it started, and what it wrote."""

    def __init__(self, process: subprocess.Popen[str], before: str) -> None:
        self.process, self.before = process, before


async def start(url: URL, *args: str, env: dict[str, str] | None = None) -> Running:
    process = start_worker(url, *args, env=env)
    return Running(process, await started(process))


def stop(worker: Running) -> str:
    worker.process.send_signal(signal.SIGTERM)
    output = worker.before + worker.process.communicate(timeout=30)[0]
    assert worker.process.returncode == 0, output
    return output


def assert_calm(output: str) -> None:
    """No error, no back-off, no retry: the worker saw nothing wrong."""
    for sign in ("ERROR", "unreachable", "retrying", "Traceback", "bug:", "waiting for"):
        assert sign not in output, output


@pytest.mark.parametrize("action", list(ACTIONS))
async def test_an_action_on_a_job_a_live_worker_runs(db: Database, action: str) -> None:
    """The job moves as the table says, its attempt ends as the action says (never lost),
    and the worker stops its collectors with no error; a requeued job is resumed with its
    progress by the next attempt."""
    call, status, outcome = ACTIONS[action]
    [job_id] = await db.new_jobs(1, ["news"])
    worker = await start(db.url, env={"COLLECTOR_STEP_SECONDS": "0.4"})
    try:
        await wait_for_progress(db, job_id, 20)
        await call(db, job_id)
        if status is JobStatus.PENDING:  # taken again, resumed, completed
            assert await wait_until_all_completed(db, 20) == 0
        else:
            assert (await db.job(job_id)).status is status
        await asyncio.sleep(1.0)  # a heartbeat or three, for anything the worker would say
    finally:
        output = stop(worker)
    assert_calm(output)
    assert f"stopped from outside ({outcome})" in output, output
    attempts = await db.attempts(job_id)
    assert attempts[0].outcome == outcome
    if status is JobStatus.PENDING:
        assert [a.outcome for a in attempts] == [outcome, "completed"]
        assert "resuming at" in output, output
    else:
        assert len(attempts) == 1


@pytest.mark.parametrize("action", list(ACTIONS))
async def test_an_action_on_a_job_whose_worker_is_gone(db: Database, action: str) -> None:
    """The dead worker's attempt is ended by the action, not lost; a live worker beside it
    logs nothing wrong, and takes the job when it is requeued."""
    call, status, outcome = ACTIONS[action]
    [job_id] = await db.new_jobs(1, ["news"])
    async with session_scope(db.sessions) as session:
        gone = await jobs.register_worker(session, "gone")
        claimed = await jobs.start_job(session, job_id, worker_id=gone)
        await jobs.report_progress(session, job_id, "news", 50.0)
    worker = await start(db.url, "--rescue-timeout", "60")
    try:
        await call(db, job_id)
        if status is JobStatus.PENDING:
            assert await wait_until_all_completed(db, 20) == 0
        await asyncio.sleep(0.6)
    finally:
        output = stop(worker)
    assert_calm(output)
    attempts = await db.attempts(job_id)
    assert attempts[0].id == claimed.attempt_id and attempts[0].outcome == outcome
    if status is JobStatus.PENDING:
        assert "resuming at 50.0%" in output, output


async def test_retry_of_a_failed_job_beside_a_live_worker(db: Database) -> None:
    """Progress kept: the next attempt resumes; or cleared: it starts over."""
    [kept, cleared] = await db.new_jobs(2, ["news"])
    async with session_scope(db.sessions) as session:
        gone = await jobs.register_worker(session, "gone")
        for job_id in (kept, cleared):
            await jobs.start_job(session, job_id, worker_id=gone)
            await jobs.report_progress(session, job_id, "news", 60.0)
            await jobs.fail_job(session, job_id, "the source was down")
    worker = await start(db.url)
    try:
        await act(db, jobs.retry_job, kept)
        async with session_scope(db.sessions) as session:
            await jobs.retry_job(session, cleared, keep_progress=False)
        assert await wait_until_all_completed(db, 20) == 0
    finally:
        output = stop(worker)
    assert_calm(output)
    assert f"job {kept}: news" in output and "resuming at 60.0%" in output, output
    for job_id in (kept, cleared):
        job = await db.job(job_id)
        assert job.error_message is None
        assert [a.outcome for a in await db.attempts(job_id)] == ["failed", "completed"]


async def test_actions_on_a_filter_take_only_the_jobs_in_a_status_they_move_from(
    db: Database,
) -> None:
    pending = await db.new_jobs(2, ["news"])
    running = await db.new_jobs(2, ["news"])
    async with session_scope(db.sessions) as session:
        worker = await jobs.register_worker(session, "filters")
        for job_id in running:
            await jobs.start_job(session, job_id, worker_id=worker)
    selection = jobs.JobSelection(job_ids=[*pending, *running])
    async with session_scope(db.sessions) as session:
        requeued = await jobs.requeue_jobs(session, selection)
    assert sorted(j.id for j in requeued) == sorted(running)
    async with session_scope(db.sessions) as session:
        cancelled = await jobs.cancel_jobs(session, selection)
    assert len(cancelled) == 4
    async with session_scope(db.sessions) as session:
        retried = await jobs.retry_jobs(
            session, jobs.JobSelection(statuses=["cancelled"], collection_type="news")
        )
    assert len(retried) == 4
    outcomes = [[a.outcome for a in await db.attempts(j)] for j in running]
    assert outcomes == [["released"], ["released"]]


@pytest.mark.parametrize(
    ("selection", "field"),
    [
        (jobs.JobSelection(job_ids=["nope"]), "job_ids[0]"),
        (jobs.JobSelection(statuses=["sleeping"]), "statuses"),
        (jobs.JobSelection(collection_type="weather"), "collection_type"),
        (jobs.JobSelection(job_ids="abc"), "job_ids"),
    ],
)
async def test_a_bad_selection_is_refused_naming_its_field(
    db: Database, selection: jobs.JobSelection, field: str
) -> None:
    async with db.sessions() as session:
        with pytest.raises(jobs.JobValidationError, match=re.escape(field)):
            await jobs.cancel_jobs(session, selection)


async def test_a_stopped_database_is_never_charged_to_a_collector() -> None:
    """PostgreSQL stopped for 10 s while 50 jobs run, with --retries 1: every job
    completes, none fails, no collector retries for it, the workers keep running and exit 0;
    attempts are handed back (`released`), never lost."""
    async with restartable_database() as (db, restart):
        job_ids = await db.new_jobs(50, ["news", "disclosure"])
        # The outage outlasts the rescue timeout (5 s) twice over; a loaded machine's late
        # heartbeats do not reach it by chance.
        workers = [
            await start(db.url, "--concurrency", "25", "--retries", "1", "--rescue-timeout", "5")
            for _ in range(2)
        ]
        try:
            await wait_for_progress(db, job_ids[0], 20)
            await asyncio.to_thread(restart, 10.0)
            await db.engine.dispose()
            left = await wait_until_all_completed(db, 120)
        finally:
            outputs = [stop(worker) for worker in workers]
        assert left == 0, outputs
        async with db.engine.connect() as conn:
            outcomes: dict[str, int] = dict(
                (
                    await conn.execute(
                        text(
                            "SELECT outcome, count(*) FROM collection_job_attempts GROUP BY outcome"
                        )
                    )
                ).all()
            )
        lines = [line for o in outputs for line in o.splitlines() if "INFO" not in line]
        # Handed back when the database answered again (a claim whose reply the outage
        # swallowed too), never rescued as lost.
        assert set(outcomes) <= {"completed", "released"}, (outcomes, "\n".join(lines[:60]))
        assert not any("Traceback" in o or "failed:" in o for o in outputs), outputs
        assert not any("retrying in" in o and "of job" in o for o in outputs), outputs


async def test_a_bug_in_a_statement_fails_the_job_loudly_and_is_not_retried(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A constraint the database enforces (here a check the test adds on the logs) is a
    bug, not an outage: one loud line naming the statement, the job failed with it."""
    async with db.engine.begin() as conn:
        await conn.execute(
            text(
                "ALTER TABLE data_collection_logs ADD CONSTRAINT no_logs_today"
                " CHECK (records_collected < 0) NOT VALID"
            )
        )
    [job_id] = await db.new_jobs(1, ["news"])
    async with working(Worker(db.url, STEADY, FAST)):
        await wait_for(lambda: _failed(db, job_id))
    job = await db.job(job_id)
    assert job.status is JobStatus.FAILED
    assert job.error_message is not None
    assert job.error_message.startswith("bug: could not write a log: [23514]")
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "could not write a log" in errors[0].getMessage()
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]
    assert [a.outcome for a in await db.attempts(job_id)][-1] == "failed"


async def _failed(db: Database, job_id: uuid.UUID) -> bool:
    return (await db.job(job_id)).status is JobStatus.FAILED


WRITES = re.compile(
    r"(UPDATE|INSERT INTO|DELETE FROM)\s+(collection_jobs|collection_job_attempts)\b"
    r"|(update|insert|delete)\((CollectionJob|CollectionJobAttempt|JOBS|ATTEMPTS)\b"
    r"|(?<!class )CollectionJobAttempt\(",
)


def test_no_module_but_the_service_writes_a_jobs_state() -> None:
    """Every statement that writes `collection_jobs` or `collection_job_attempts` lives in
    app/services/collection_jobs; the worker, the seed and the factories call it."""
    root = Path(__file__).parents[1]
    owner = root / "app" / "services" / "collection_jobs"
    offenders = [
        f"{path.relative_to(root)}: {match.group(0)}"
        for path in sorted((root / "app").rglob("*.py"))
        if owner not in path.parents and "migrations" not in path.parts
        for match in WRITES.finditer(path.read_text())
    ]
    assert offenders == []
    assert any(WRITES.finditer((owner / "runs.py").read_text()))  # the pattern finds them
