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
