"""Workers hear of a new or cancelled job by `LISTEN`: the notification is sent in the
writer's transaction, so it arrives at commit, and never for a transaction rolled back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from app.db.engine import connect, create_engine, create_sessionmaker, session_scope
from app.models import Analyst
from app.services import collection_jobs as jobs
from app.testing.databases import CloneFactory


async def test_created_and_cancelled_jobs_are_announced_at_commit_only(
    database_of_its_own: CloneFactory,
) -> None:
    url = await database_of_its_own()
    heard: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    def hear(_conn: Any, _pid: int, channel: str, payload: object) -> None:
        heard.put_nowait((channel, str(payload)))

    listener = await connect(url)
    engine = create_engine(url, null_pool=True)
    sessions = create_sessionmaker(engine)
    try:
        for channel in (jobs.JOB_CREATED, jobs.ATTEMPT_STOPPED):
            await listener.add_listener(channel, hear)
        now = datetime.now(UTC)
        new_job: dict[str, Any] = {
            "collection_types": ["news"],
            "start_date": now - timedelta(1),
            "end_date": now,
        }

        async with session_scope(sessions) as session:
            analyst = Analyst(email="notify@example.com", name="알림")
            session.add(analyst)
            await session.flush()
            job = await jobs.create_job(session, analyst_id=analyst.id, **new_job)
            await asyncio.sleep(0.2)
            assert heard.empty()  # not before the commit
        assert await asyncio.wait_for(heard.get(), 5) == (jobs.JOB_CREATED, str(job.id))

        async with sessions() as session:  # rolled back: nothing was written, nothing heard
            await jobs.create_job(session, analyst_id=analyst.id, **new_job)
            await session.rollback()
        await asyncio.sleep(0.2)
        assert heard.empty()

        async with session_scope(sessions) as session:  # a running job's worker is told
            worker = await jobs.register_worker(session, "notified")
            claimed = await jobs.start_job(session, job.id, worker_id=worker)
            await jobs.cancel_job(session, job.id)
        stopped = (jobs.ATTEMPT_STOPPED, str(claimed.attempt_id))
        assert await asyncio.wait_for(heard.get(), 5) == stopped
    finally:
        await listener.close()
        await engine.dispose()


HOT_PATH = {"claim", "start", "progress", "complete", "complete many"}


async def test_every_write_of_a_job_but_the_hot_path_is_announced_on_the_changed_channel(
    database_of_its_own: CloneFactory,
) -> None:
    """Whoever shows jobs live (`app.web`) listens to one channel: every statement of the
    service that changes a job tells it, with the job's id, once per job and commit;
    except the running worker's hot path (claim, progress, completion), whose commits a
    notification would serialize: `app.web` reads the running jobs that changed."""
    url = await database_of_its_own()
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await connect(url)
    engine = create_engine(url, null_pool=True)
    sessions = create_sessionmaker(engine)

    async def told(step: str, job_id: object) -> None:
        got = await asyncio.wait_for(heard.get(), 5)
        assert (step, got) == (step, str(job_id))
        await asyncio.sleep(0.05)
        assert heard.empty(), f"{step}: more than one notification"

    try:
        await listener.add_listener(
            jobs.JOB_CHANGED, lambda _c, _p, _ch, payload: heard.put_nowait(str(payload))
        )
        now = datetime.now(UTC)
        async with session_scope(sessions) as session:
            analyst = Analyst(email="changed@example.com", name="변경")
            session.add(analyst)
            await session.flush()
            worker = await jobs.register_worker(session, "told")

        async def new_job() -> Any:
            async with session_scope(sessions) as session:
                job = await jobs.create_job(
                    session,
                    analyst_id=analyst.id,
                    collection_types=["news", "disclosure"],
                    start_date=now - timedelta(1),
                    end_date=now,
                )
            await told("create", job.id)
            return job

        async def step(name: str, job_id: object, call: Any) -> Any:
            async with session_scope(sessions) as session:
                result = await call(session)
            if name in HOT_PATH:
                await asyncio.sleep(0.2)
                assert heard.empty(), f"{name} told JOB_CHANGED"
            else:
                await told(name, job_id)
            return result

        job = await new_job()
        claimed = await step("claim", job.id, lambda s: jobs.claim_next_job(s, worker_id=worker))
        run = claimed.run
        await step("progress", job.id, lambda s: jobs.report_progress(s, job.id, "news", 40))
        await step("release", job.id, lambda s: jobs.release_run(s, run))

        async def start(s: Any) -> Any:
            return (await jobs.start_job(s, job.id, worker_id=worker)).run

        run = await step("start", job.id, start)
        await step("fail run", job.id, lambda s: jobs.fail_run(s, run, "broken"))
        await step("retry", job.id, lambda s: jobs.retry_job(s, job.id))
        await step("start", job.id, start)
        await step("requeue", job.id, lambda s: jobs.requeue_job(s, job.id))
        await step("start", job.id, start)
        await asyncio.sleep(0.05)
        await step("rescue", job.id, lambda s: jobs.rescue(s, 0.01, 10))
        await step("start", job.id, start)
        await asyncio.sleep(0.05)
        await step("orphan", job.id, lambda s: jobs.release_orphans(s, worker, [], 0.01))
        run = await step("start", job.id, start)
        await step("complete many", job.id, lambda s: jobs.complete_runs(s, [run]))

        job = await new_job()
        run = await step("start", job.id, start)
        await step("complete", job.id, lambda s: jobs.complete_run(s, run))
        job = await new_job()
        await step("fail", job.id, lambda s: jobs.fail_job(s, job.id, "by hand"))
        job = await new_job()
        await step("cancel", job.id, lambda s: jobs.cancel_job(s, job.id))
    finally:
        await listener.close()
        await engine.dispose()
