"""Run jobs in a test, the way River's `rivertest` or procrastinate's `run_worker(wait=False)`
do: the suite's own collectors, in-process, until no job is left to claim, with the same
claims, fencing and status rules as a worker process.

    from app.testing.worker import run_jobs

    async def test_news_is_collected(database_of_its_own):
        url = await database_of_its_own()
        ...  # create jobs and commit
        await run_jobs(url, {"news": my_news_collector})
"""

from __future__ import annotations

import asyncio

from sqlalchemy.engine import URL

from app.worker import Collectors, Worker, WorkerSettings

FAST = WorkerSettings(poll_interval=0.1, heartbeat_seconds=0.5, rescue_timeout=5.0, retries=0)
"""Quick settings for tests: no retries, so a collector's error fails its job at once."""


async def run_jobs(
    url: URL, collectors: Collectors, settings: WorkerSettings = FAST, *, within: float = 60
) -> None:
    """Run every job the collectors can run until none is left (jobs need committed rows:
    use `database_of_its_own`, not the rolled-back `session`). Raises TimeoutError after
    `within` seconds."""
    await asyncio.wait_for(Worker(url, collectors, settings).run(until_empty=True), within)
