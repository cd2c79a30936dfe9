"""pgqueuer 1.6, set up as its documentation says (README Quick Start; `pgq install`; the
cancellation guide: the job's work runs inside `context.cancellation`).

Worker: `python -m pgqueuer run benchmarks.peers.pgqueuer_peer:main --max-concurrent-tasks
C --batch-size C/2` (it requires at least twice the batch size), LISTEN/NOTIFY on, and a
job whose heartbeat is older than `--heartbeat-timeout` (default 30 s) picked again.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Context, Job
from pgqueuer.queries import Queries
from pgqueuer.types import JobId
from sqlalchemy.engine import URL

from benchmarks.peers import Settings, job_body, libpq_url


@contextlib.asynccontextmanager
async def main() -> AsyncIterator[PgQueuer]:
    """The factory `pgq run` takes (1.6 wants an async context manager)."""
    connection = await asyncpg.connect(os.environ["BENCH_PG_DSN"])
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("trivial")
    async def trivial(job: Job, context: Context) -> None:
        with context.cancellation:
            await job_body(job.id)

    try:
        yield pgq
    finally:
        await connection.close()


class Pgqueuer:
    name = "pgqueuer 1.6"
    recovery = "automatic: a job whose heartbeat is 30 s old (default) is picked again"

    async def set_up(self, url: URL) -> None:
        connection = await asyncpg.connect(libpq_url(url))
        try:
            await Queries(AsyncpgDriver(connection)).install()
        finally:
            await connection.close()

    async def insert_many(self, url: URL, count: int) -> None:
        connection = await asyncpg.connect(libpq_url(url))
        try:
            queries = Queries(AsyncpgDriver(connection))
            for start in range(0, count, 1000):
                size = min(1000, count - start)
                await queries.enqueue(["trivial"] * size, [None] * size, [0] * size)
        finally:
            await connection.close()

    async def inserter(self, url: URL) -> _Inserter:
        connection = await asyncpg.connect(libpq_url(url))
        return _Inserter(connection)

    def worker_argv(self, settings: Settings) -> list[str]:
        batch = max(1, settings.concurrency // 2)
        argv = [sys.executable, "-m", "pgqueuer", "run", f"{__name__}:main"]
        limit = str(max(settings.concurrency, 2 * batch))
        argv += ["--log-level", "WARNING"]  # its default (a string) trips its own CLI in 1.6.0
        return [*argv, "--max-concurrent-tasks", limit, "--batch-size", str(batch)]


class _Inserter:
    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection
        self._queries = Queries(AsyncpgDriver(connection))

    async def insert(self) -> str:
        (job_id,) = await self._queries.enqueue("trivial", None)
        return str(job_id)

    async def cancel(self, key: str) -> None:
        await self._queries.mark_job_as_cancelled([JobId(int(key))])

    async def close(self) -> None:
        await self._connection.close()
