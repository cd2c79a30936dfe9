"""procrastinate 3.10, set up as its documentation says (Quickstart; How-to: "Retry stalled
jobs"; "Cancel a job", with `abort=True`).

Worker: `python -m procrastinate --app benchmarks.peers.procrastinate_peer.app worker
--concurrency C` (listens for new jobs with LISTEN/NOTIFY by default). Jobs of a killed
worker stay `doing` forever unless the application runs the documented recipe below;
$BENCH_RECIPE_CRON sets how often (its documentation's example: every 10 minutes).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import procrastinate
from sqlalchemy.engine import URL

from benchmarks.peers import Settings, job_body, libpq_url

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("BENCH_PG_DSN", "")),
)


@app.task(name="trivial", pass_context=True)
async def trivial(context: procrastinate.JobContext) -> None:
    assert context.job is not None
    await job_body(context.job.id)


if cron := os.environ.get("BENCH_RECIPE_CRON"):

    @app.periodic(cron=cron)
    @app.task(queueing_lock="retry_stalled_jobs", pass_context=True)
    async def retry_stalled_jobs(context: procrastinate.JobContext, timestamp: int) -> None:
        stalled_jobs = await app.job_manager.get_stalled_jobs()
        for job in stalled_jobs:
            await app.job_manager.retry_job(job)


class Procrastinate:
    name = "procrastinate 3.10"
    recovery = "none built in; the documented recipe (a periodic task) at its fastest, every second"

    async def set_up(self, url: URL) -> None:
        async with _opened(url) as opened:
            await opened.schema_manager.apply_schema_async()

    async def insert_many(self, url: URL, count: int) -> None:
        async with _opened(url):
            batch: list[dict[str, Any]] = [{} for _ in range(1000)]
            for start in range(0, count, len(batch)):
                await trivial.batch_defer_async(*batch[: count - start])

    async def inserter(self, url: URL) -> _Inserter:
        stack = contextlib.AsyncExitStack()
        opened = await stack.enter_async_context(_opened(url))
        return _Inserter(opened, stack)

    def worker_argv(self, settings: Settings) -> list[str]:
        argv = [sys.executable, "-m", "procrastinate", "--app", f"{__name__}.app", "worker"]
        return [*argv, "--concurrency", str(settings.concurrency)]


class _Inserter:
    def __init__(self, opened: procrastinate.App, stack: contextlib.AsyncExitStack) -> None:
        self._app, self._stack = opened, stack

    async def insert(self) -> str:
        return str(await trivial.defer_async())

    async def cancel(self, key: str) -> None:
        await self._app.job_manager.cancel_job_by_id_async(int(key), abort=True)

    async def close(self) -> None:
        await self._stack.aclose()


@contextlib.asynccontextmanager
async def _opened(url: URL) -> AsyncIterator[procrastinate.App]:
    """The module's app on a connection to `url` (the driver's side: deferring, cancelling)."""
    connector = procrastinate.PsycopgConnector(conninfo=libpq_url(url))
    with app.replace_connector(connector) as replaced:
        async with replaced.open_async():
            yield replaced
