"""The worker runtime on a real database: jobs run to completion through collectors, a
final error fails the job naming the type, a cancel reaches a running collector at once, a
job whose worker is gone is rescued with its progress, and a worker killed with SIGKILL
mid-job is replaced by another that finishes it."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import subprocess
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from app.db.engine import session_scope
from app.models import (
    CollectionJobAttempt,
    CollectionWorker,
    DataCollectionLog,
    JobStatus,
)
from app.services import collection_jobs as jobs
from app.testing.worker import run_jobs
from app.worker import Worker, WorkerSettings
from app.worker.collectors import Collectors
from app.worker.job import StuckAction
from tests.helpers.proxy import proxy_to
from tests.helpers.tools import assert_one_line_error, run_tool
from tests.helpers.workers import (
    FAST,
    Database,
    restartable_database,
    start_worker,
    started,
    wait_for_backends,
    wait_for_progress,
    wait_until_all_completed,
    working,
)
from tests.test_concurrency import pgbouncer_url  # noqa: F401 - the fixture, shared
from tests.worker_collectors import BROKEN, FOREVER, STEADY, STOPPED_AT


async def run_until_empty(db: Database, collectors: Collectors) -> None:
    await run_jobs(db.url, collectors, FAST)


async def unfinished_jobs(db: Database) -> list[tuple[object, ...]]:
    """Each job not completed, with its attempts: what a failure message shows."""
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT j.id, j.status, j.error_message, j.progress, a.heartbeat_at, a.outcome"
                " FROM collection_jobs j"
                " LEFT JOIN collection_job_attempts a ON a.collection_job_id = j.id"
                " WHERE j.status <> 'completed' ORDER BY j.id, a.run_started_at"
            )
        )
        return [tuple(row) for row in rows]


async def wait_for_log(caplog: pytest.LogCaptureFixture, words: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not any(words in record.getMessage() for record in caplog.records):
        assert time.monotonic() < deadline, f"no log line with {words!r} in {seconds}s"
        await asyncio.sleep(0.02)


async def rescue_now(db: Database) -> list[uuid.UUID]:
    """The service's rescue, as a worker's upkeep runs it, taking any attempt that is not
    heartbeating right now (its worker is gone)."""
    async with db.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        return await jobs.rescue(conn, 0.0, 3)


async def test_jobs_run_to_completion_with_progress_logs_and_their_attempt(db: Database) -> None:
    job_ids = await db.new_jobs(3, ["news", "disclosure"])
    await run_until_empty(db, STEADY)
    for job_id in job_ids:
        job = await db.job(job_id)
        assert job.status is JobStatus.COMPLETED and job.overall_progress == "100.0"
        [attempt] = await db.attempts(job_id)
        assert attempt.outcome == "completed" and attempt.run_started_at == job.started_at
    async with db.sessions() as session:
        logs = await session.scalar(select(func.count()).select_from(DataCollectionLog))
        stopped = await session.scalar(select(CollectionWorker.stopped_at))
    assert logs == 3 * 2 * 10
    assert stopped is not None


async def test_many_jobs_at_once_share_a_bounded_pool_and_are_claimed_in_batches(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_ids = await db.new_jobs(24, ["news", "disclosure"])
    seen: list[int] = []

    async def sample() -> None:
        while True:
            async with db.engine.connect() as conn:
                held = await conn.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database()"
                        " AND application_name = 'collection-worker'"
                    )
                )
            seen.append(int(held or 0))
            await asyncio.sleep(0.02)

    batches: list[int] = []
    claim_jobs = jobs.claim_jobs

    async def counted_claim(*args: Any, **kwargs: Any) -> list[jobs.Claimed]:
        claimed = await claim_jobs(*args, **kwargs)
        batches.append(len(claimed))
        return claimed

    monkeypatch.setattr(jobs, "claim_jobs", counted_claim)
    sampler = asyncio.create_task(sample())
    try:
        await run_jobs(db.url, STEADY, replace(FAST, concurrency=8, pool_size=2))
    finally:
        sampler.cancel()
    assert [(await db.job(j)).status for j in job_ids] == [JobStatus.COMPLETED] * len(job_ids)
    assert seen and max(seen) <= 2  # 8 jobs of 2 types at once, on 2 connections
    async with db.sessions() as session:
        starts = await session.scalar(
            select(func.count(func.distinct(CollectionJobAttempt.run_started_at)))
        )
    assert starts == len(job_ids)  # each job its own run, even when claimed together
    assert max(batches) > 1, batches  # ... and they were: several jobs a claim


async def test_completion_and_its_attempts_end_are_one_fenced_statement(db: Database) -> None:
    [job_id] = await db.new_jobs(1, ["news", "disclosure"])
    async with db.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        worker = await jobs.register_worker(conn, "test")
        [claimed] = await jobs.claim_jobs(conn, worker, ["news", "disclosure"], 8)
        run = claimed.run
        stale = replace(run, started_at=run.started_at - timedelta(seconds=1))
        with pytest.raises(jobs.JobNotRunningError, match="newer run"):
            await jobs.complete_run(conn, stale)
        assert (await db.job(job_id)).status is JobStatus.RUNNING
        assert [a.ended_at for a in await db.attempts(job_id)] == [None]  # still live
        finished = await jobs.complete_run(conn, run)
    job = await db.job(job_id)
    assert job.status is JobStatus.COMPLETED and job.completed_at == finished
    assert job.progress == {"news": 100, "disclosure": 100} and job.overall_progress == "100.0"
    [attempt] = await db.attempts(job_id)
    assert attempt.outcome == "completed" and attempt.ended_at is not None


async def test_a_job_created_while_every_place_is_taken_starts_when_one_frees(
    db: Database,
) -> None:
    """Its notification finds the worker full; the place that frees takes it at once, not
    after the poll interval (a finished job alone does not send a claim to an empty queue)."""
    [first] = await db.new_jobs(1, ["news"])
    worker = Worker(db.url, STEADY, replace(FAST, concurrency=1, poll_interval=60.0))
    async with working(worker):
        await wait_for_progress(db, first, 10)
        [second] = await db.new_jobs(1, ["news"])  # notified while the only place is taken
        assert await wait_until_all_completed(db, 10) == 0
    assert [a.outcome for a in await db.attempts(second)] == ["completed"]


async def test_a_stop_that_comes_while_a_statement_is_in_flight_is_not_lost(
    db: Database,
) -> None:
    """stop() while the round waits on the server (here, a lock) ends the run as soon as
    the statement returns, not one poll interval later: a wake-up is never cleared unseen."""
    worker = Worker(db.url, STEADY, replace(FAST, poll_interval=60.0))
    async with db.engine.connect() as locker:
        await locker.execute(text("LOCK TABLE collection_jobs IN ACCESS EXCLUSIVE MODE"))
        running = asyncio.create_task(worker.run())
        try:
            await wait_for_backends(db, "collection-worker", on_a_lock=True)
            worker.stop()
            await locker.rollback()
            await asyncio.wait_for(asyncio.shield(running), 10)
        finally:
            worker.stop()
            worker.stop()
            await asyncio.wait_for(running, 20)


async def test_a_stop_during_an_outage_does_not_wait_out_the_backoff(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """With the database gone for a while, the worker backs off for seconds between tries;
    a stop then ends it at once, not after the current backoff."""
    caplog.set_level(logging.INFO, logger="app.worker")
    async with proxy_to(db.url) as (proxy, through_proxy):
        worker = Worker(through_proxy, STEADY, FAST)
        running = asyncio.create_task(worker.run())
        try:
            await wait_for_log(caplog, "started:")  # its loop is running
            await proxy.close()  # every connection drops, and new ones are refused
            # backoff 0.5, 1, 2, then a wait of about 4 s begins
            await wait_for_log(caplog, "retrying in 4", seconds=30)
            worker.stop()
            stopped_at = time.monotonic()
            await asyncio.wait_for(asyncio.shield(running), 10)
            assert time.monotonic() - stopped_at < 1.5
        finally:
            worker.stop()
            worker.stop()
            await asyncio.wait_for(running, 20)


async def test_a_listening_connection_that_ends_is_replaced_at_once(db: Database) -> None:
    """A server restart, an idle timeout or an operator ends the LISTEN connection: the
    worker listens again and looks at the queue (a notification sent meanwhile is lost),
    instead of polling alone from then on. The poll interval here is a minute."""
    worker = Worker(db.url, STEADY, replace(FAST, poll_interval=60.0))
    async with working(worker):
        [listening] = await wait_for_backends(db, "collection-worker-listen")
        async with db.engine.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": listening})
        await db.new_jobs(1, ["news"])
        assert await wait_until_all_completed(db, 10) == 0
        [again] = await wait_for_backends(db, "collection-worker-listen")
        assert again != listening
        await db.new_jobs(1, ["news"])  # heard on the new connection
        assert await wait_until_all_completed(db, 10) == 0


async def test_a_listening_connection_gone_silent_is_noticed_and_replaced(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A NAT or firewall that forgets the LISTEN connection closes nothing: notifications
    just stop. The worker pings it, and replaces it when the ping gets no answer."""
    caplog.set_level(logging.INFO)
    async with proxy_to(db.url) as (proxy, through_proxy):
        settings = replace(FAST, poll_interval=60.0, listen_url=through_proxy)
        worker = Worker(db.url, STEADY, settings)
        async with working(worker):
            await wait_for_log(caplog, "started: collects")  # listening, not on its way
            proxy.silence_open_connections()
            await db.new_jobs(1, ["news"])  # its notification is lost on the silent link
            assert await wait_until_all_completed(db, 10) == 0


async def test_a_final_error_fails_the_job_naming_the_type(db: Database) -> None:
    [job_id] = await db.new_jobs(1, ["news", "disclosure"])
    await run_until_empty(db, BROKEN)
    job = await db.job(job_id)
    assert job.status is JobStatus.FAILED
    assert job.error_message == "disclosure: the source refused our credentials"
    assert [a.outcome for a in await db.attempts(job_id)] == ["failed"]


async def test_a_worker_leaves_jobs_with_a_type_it_cannot_run(db: Database) -> None:
    [job_id] = await db.new_jobs(1, ["news", "stock_price"])
    await run_until_empty(db, STEADY)
    assert (await db.job(job_id)).status is JobStatus.PENDING


@pytest.mark.parametrize("listen", [True, False], ids=["listening", "at the next heartbeat"])
async def test_a_cancel_reaches_the_running_collector_at_once(db: Database, listen: bool) -> None:
    """Within a second: by its notification, or without LISTEN at the next heartbeat (the
    poll interval is a minute, so it is not the poll)."""
    [job_id] = await db.new_jobs(1, ["news"])
    settings = FAST if listen else replace(FAST, listen=False, poll_interval=60.0)
    worker = Worker(db.url, FOREVER, settings)
    async with working(worker):
        for _ in range(100):
            if (await db.job(job_id)).progress == {"news": 5.0}:
                break
            await asyncio.sleep(0.05)
        async with session_scope(db.sessions) as session:
            await jobs.cancel_job(session, job_id)
        cancelled_at = time.monotonic()
        for _ in range(100):
            if job_id in STOPPED_AT:
                break
            await asyncio.sleep(0.02)
        assert STOPPED_AT[job_id] - cancelled_at < 1.0  # not at the next heartbeat or poll
        assert [a.outcome for a in await db.attempts(job_id)] == ["cancelled"]


async def test_a_job_whose_worker_is_gone_is_rescued_once_and_resumes_its_progress(
    db: Database,
) -> None:
    [job_id] = await db.new_jobs(1, ["news", "disclosure"])
    async with session_scope(db.sessions) as session:  # a worker claimed it, then vanished
        gone = await jobs.register_worker(session, "gone:1")
        claimed = await jobs.claim_next_job(session, worker_id=gone)
        assert claimed is not None
        old_run = claimed.run.started_at
        await jobs.report_progress(session, job_id, "news", 60, run_started_at=old_run)
    assert await rescue_now(db) == [job_id]
    assert await rescue_now(db) == []  # once

    await run_until_empty(db, STEADY)

    job = await db.job(job_id)
    assert job.status is JobStatus.COMPLETED
    assert [a.outcome for a in await db.attempts(job_id)] == ["lost", "completed"]
    async with db.sessions() as session:  # news resumed at 60: four steps, not ten
        news_logs = await session.scalar(
            select(func.count())
            .select_from(DataCollectionLog)
            .where(DataCollectionLog.collection_type == "news")
        )
    assert news_logs == 4
    with pytest.raises(jobs.JobNotRunningError):  # the lost run writes nothing any more
        async with session_scope(db.sessions) as session:
            await jobs.add_job_logs(
                session, job_id, [jobs.LogEntry("news", "success")], run_started_at=old_run
            )


async def test_after_the_last_allowed_loss_the_job_fails_saying_so(db: Database) -> None:
    [job_id] = await db.new_jobs(1, ["news"])
    for _ in range(2):  # lost twice before
        async with session_scope(db.sessions) as session:
            gone = await jobs.register_worker(session, "gone:2")
            assert await jobs.claim_next_job(session, worker_id=gone) is not None
        assert await rescue_now(db) == [job_id]
        assert (await db.job(job_id)).status is JobStatus.PENDING
    async with session_scope(db.sessions) as session:  # and now the third time
        gone = await jobs.register_worker(session, "gone:2")
        assert await jobs.claim_next_job(session, worker_id=gone) is not None
    settings = WorkerSettings(
        poll_interval=0.2, heartbeat_seconds=0.3, rescue_timeout=0.9, max_lost_attempts=3
    )
    async with working(Worker(db.url, STEADY, settings)):
        for _ in range(100):
            if (await db.job(job_id)).status is not JobStatus.RUNNING:
                break
            await asyncio.sleep(0.05)
    job = await db.job(job_id)
    assert [a.outcome for a in await db.attempts(job_id)] == ["lost"] * 3
    assert job.status is JobStatus.FAILED
    assert job.error_message is not None
    assert job.error_message.startswith("the worker stopped answering 3 times")


async def test_a_worker_killed_mid_job_is_replaced_and_the_job_finishes(db: Database) -> None:
    [job_id] = await db.new_jobs(1, ["news", "disclosure"])
    first = start_worker(db.url)
    try:
        await wait_for_progress(db, job_id, 20)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
        killed_at = (await db.job(job_id)).progress or {}
        samples: list[dict[str, float]] = []

        async def sample() -> None:  # the progress, as an analyst's screen would see it
            while True:
                samples.append(dict((await db.job(job_id)).progress or {}))
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        second = start_worker(db.url)
        try:
            await wait_until_all_completed(db, 20)
        finally:
            sampler.cancel()
            second.send_signal(signal.SIGTERM)
            output = second.communicate(timeout=20)[0]
        # Never back, at any moment: not below where it was killed, never below before.
        for before, after in itertools.pairwise([killed_at, *samples]):
            assert all(after.get(t, 0) >= v for t, v in before.items()), (before, after)
        assert len(samples) > 10  # the rescue and the resumed run were watched
        assert second.returncode == 0, output
        assert "Traceback" not in output
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate(timeout=10)
    job = await db.job(job_id)
    assert job.status is JobStatus.COMPLETED
    assert [a.outcome for a in await db.attempts(job_id)] == ["lost", "completed"]
    assert all(job.progress and job.progress[t] >= v for t, v in killed_at.items())


async def test_sigterm_hands_the_job_back_with_its_progress(db: Database) -> None:
    [job_id] = await db.new_jobs(1, ["news"])
    worker = start_worker(db.url, "--grace", "0.2")
    try:
        await wait_for_progress(db, job_id, 20)
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=20)[0]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate(timeout=10)
    assert worker.returncode == 0, output
    assert "Traceback" not in output
    job = await db.job(job_id)
    assert job.status is JobStatus.PENDING and job.started_at is None
    assert job.progress and job.progress["news"] >= 20
    assert [a.outcome for a in await db.attempts(job_id)] == ["released"]  # not "lost"


async def test_a_collector_that_blocks_its_loop_is_not_rescued_while_its_process_lives(
    db: Database,
) -> None:
    """The heartbeat has a thread of its own: 3 s of a blocked loop, twice the rescue
    timeout, and another worker's rescuer still sees the attempt alive."""
    [job_id] = await db.new_jobs(1, ["news"])
    blocked = start_worker(db.url, collectors="BLOCKING")
    rescuer = Worker(db.url, {"disclosure": STEADY["disclosure"]}, FAST)  # rescues, can't claim
    try:
        async with working(rescuer):
            await wait_until_all_completed(db, 20)
    finally:
        blocked.send_signal(signal.SIGTERM)
        output = blocked.communicate(timeout=20)[0]
    assert (await db.job(job_id)).status is JobStatus.COMPLETED, output
    assert [a.outcome for a in await db.attempts(job_id)] == ["completed"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no_colon"], "'no_colon' is not module:attribute"),
        (["no.such.module:X"], "cannot import no.such.module"),
        (["tests.worker_collectors:nothing"], "is not a mapping of collection type"),
        (["app.worker.demo:COLLECTORS", "--heartbeat", "8"], "more than twice --heartbeat"),
    ],
)
def test_bad_collectors_or_settings_are_one_line_before_anything_is_claimed(
    argv: list[str], message: str, tmp_path: Path
) -> None:
    result = run_tool("-m", "app.worker", *argv, env={"PYTHONPATH": os.getcwd()}, cwd=tmp_path)
    assert_one_line_error(result, 2, message, prefix="worker: error: ")


def test_bad_arguments_are_refused_by_the_parser(tmp_path: Path) -> None:
    result = run_tool("-m", "app.worker", "x:y", "--concurrency", "0", env={}, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--concurrency: 0 is not a positive whole number" in result.stderr


async def test_eight_worker_processes_run_hundreds_of_jobs_each_exactly_once(
    db: Database,
) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(
            text("CREATE TABLE collector_live (job_id uuid, type text, PRIMARY KEY (job_id, type))")
        )
        await conn.execute(text("CREATE TABLE collector_overlaps (job_id uuid, type text)"))
        await conn.execute(text("CREATE TABLE collector_runs (job_id uuid, type text)"))
    workers = [
        start_worker(db.url, "--concurrency", "8", "--rescue-timeout", "6", collectors="COUNTED")
        for _ in range(8)
    ]
    try:
        # All eight compete for the jobs: created once every one of them has started
        # (and can take a signal), however slow the machine.
        before = [await started(worker) for worker in workers]
        job_ids = set(await db.new_jobs(300, ["news"]))
        left = await wait_until_all_completed(db, 120)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=30)[0] for worker in workers]
    outputs = [b + o for b, o in zip(before, outputs, strict=True)]
    assert left == 0, (await unfinished_jobs(db), [o[-2000:] for o in outputs])
    assert all(w.returncode == 0 for w in workers), outputs
    async with db.sessions() as session:
        runs = (
            await session.execute(text("SELECT job_id, count(*) FROM collector_runs GROUP BY 1"))
        ).all()
        overlaps = await session.scalar(text("SELECT count(*) FROM collector_overlaps"))
        attempts = (
            await session.execute(
                select(CollectionJobAttempt.collection_job_id, CollectionJobAttempt.outcome)
            )
        ).all()
    assert overlaps == 0
    assert {job for job, _ in runs} == job_ids and {n for _, n in runs} == {1}
    assert sorted(job for job, _ in attempts) == sorted(job_ids)  # one attempt each
    assert {outcome for _, outcome in attempts} == {"completed"}


async def test_a_worker_cut_off_from_the_database_stops_and_its_late_writes_never_land(
    db: Database,
) -> None:
    [job_id] = await db.new_jobs(1, ["news"])
    async with proxy_to(db.url) as (proxy, through_proxy):
        cut = start_worker(through_proxy, "--heartbeat", "0.3", "--rescue-timeout", "2")
        try:
            await wait_for_progress(db, job_id, 20)
            proxy.forwarding.clear()  # the network splits: nothing passes, nothing closes
            rescuer = Worker(db.url, STEADY, replace(FAST, rescue_timeout=2.0))
            async with working(rescuer):
                await wait_until_all_completed(db, 30)
            assert (await db.job(job_id)).status is JobStatus.COMPLETED
            logs_after = await db.count_logs()
            proxy.forwarding.set()  # the split heals: whatever the old attempt sent arrives
            await asyncio.sleep(2)
            assert await db.count_logs() == logs_after  # refused: not the current run
            assert (await db.job(job_id)).status is JobStatus.COMPLETED
            assert [a.outcome for a in await db.attempts(job_id)] == ["lost", "completed"]
        finally:
            cut.send_signal(signal.SIGTERM)
            try:
                output = cut.communicate(timeout=30)[0]
            except subprocess.TimeoutExpired:
                cut.kill()
                output = cut.communicate()[0]
                raise AssertionError(f"the worker did not stop:\n{output}") from None
    assert cut.returncode == 0, output
    assert "Traceback" not in output


async def test_a_postgresql_restart_while_jobs_run_is_ridden_out() -> None:
    """Workers reconnect after the server restarts: every job completes (or is rescued and
    completes), every worker exits 0, and no output holds a traceback."""
    async with restartable_database() as (db, restart):
        job_ids = await db.new_jobs(12, ["news"])
        # A rescue timeout a loaded machine's late heartbeats cannot reach by chance:
        # what is tested is the restart.
        workers = [
            start_worker(db.url, "--concurrency", "2", "--rescue-timeout", "5") for _ in range(2)
        ]
        try:
            await wait_for_progress(db, job_ids[0], 20)
            await asyncio.to_thread(restart)
            await db.engine.dispose()  # the test's own connections died with the server
            left = await wait_until_all_completed(db, 120)
            unfinished = await unfinished_jobs(db) if left else []
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            outputs = [worker.communicate(timeout=30)[0] for worker in workers]
        if left:  # in full: what the unfinished jobs are, and what was said of them
            ids = {str(row[0]) for row in unfinished}
            said = [
                line
                for output in outputs
                for line in output.splitlines()
                if "INFO" not in line or any(i in line for i in ids)
            ]
            pytest.fail("\n".join([*map(repr, unfinished), *said]), pytrace=False)
        assert [w.returncode for w in workers] == [0, 0], outputs
        assert not any("Traceback" in output for output in outputs), outputs


@pytest.mark.parametrize("listening", ["poll only", "direct listen URL"])
async def test_through_pgbouncer_in_transaction_mode(
    listening: str, db: Database, request: pytest.FixtureRequest
) -> None:
    """Poll-only, or LISTEN on a direct connection of its own; everything else through a
    real PgBouncer in transaction mode, without named prepared statements."""
    through = request.getfixturevalue("pgbouncer_url").set(database=db.url.database)
    env = {"DB_DISABLE_PREPARED_STATEMENTS": "true"}
    extra: tuple[str, ...] = ("--no-listen",)
    if listening != "poll only":
        env["WORKER_LISTEN_URL"] = db.url.render_as_string(hide_password=False)
        extra = ()
    job_ids = await db.new_jobs(4, ["news", "disclosure"])
    worker = start_worker(through, *extra, env=env)
    try:
        await wait_until_all_completed(db, 30)
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=30)[0]
    statuses = {(await db.job(job_id)).status for job_id in job_ids}
    assert statuses == {JobStatus.COMPLETED}, output
    assert worker.returncode == 0 and "Traceback" not in output, output


@pytest.mark.parametrize("action", ["fail", "requeue"])
async def test_a_job_stuck_while_its_worker_lives_is_told_apart_and_handled(
    action: str, db: Database
) -> None:
    """Heartbeats, but no progress for `stuck_after`: not rescued as lost; failed saying
    so, or handed back with its progress, as configured."""
    [job_id] = await db.new_jobs(1, ["news"])
    settings = replace(FAST, stuck_after=1.0, stuck_action=StuckAction(action))
    worker = Worker(db.url, FOREVER, settings)
    async with working(worker):
        for _ in range(200):
            outcomes = [a.outcome for a in await db.attempts(job_id)]
            if outcomes and outcomes[0] is not None:
                break
            await asyncio.sleep(0.05)
    job = await db.job(job_id)
    if action == "fail":
        assert outcomes[0] == "failed" and job.status is JobStatus.FAILED
        assert job.error_message is not None
        assert job.error_message.startswith("no progress for 1s while its worker was alive")
    else:
        assert outcomes[0] == "released" and job.progress == {"news": 5.0}


def test_help_says_what_the_command_does_and_shows_each_default(tmp_path: Path) -> None:
    result = run_tool("-m", "app.worker", "--help", env={}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "Run a worker process. It claims the collection jobs" in text
    assert "hands them back with their progress on SIGTERM or SIGINT" in text
    blocks = result.stdout.split("\n  --")  # one an option, its help wrapped below it
    defaults = WorkerSettings()
    for option, default in {
        "--concurrency": defaults.concurrency,
        "--pool-size": defaults.pool_size,
        "--poll-interval": defaults.poll_interval,
        "--heartbeat": defaults.heartbeat_seconds,
        "--rescue-timeout": defaults.rescue_timeout,
        "--grace": defaults.grace_seconds,
        "--retries": defaults.retries,
        "--stuck-after": defaults.stuck_after,
        "--stuck-action": defaults.stuck_action,
    }.items():
        [block] = [b for b in blocks if b.startswith(option[2:] + " ")]
        assert f"(default: {default})" in " ".join(block.split()), block
