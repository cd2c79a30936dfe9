"""This project's worker: collection jobs of one type whose collector is the trivial job.

Worker: `python -m app.worker benchmarks.peers.ours:COLLECTORS --concurrency C` (docs/worker.md).
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from sqlalchemy.engine import URL

from app.db.engine import connect, create_engine, create_pool
from app.db.reset import init_db
from app.db.settings import Environment
from app.services import collection_jobs as jobs
from app.worker import Collector, CollectorContext
from benchmarks.peers import Settings, job_body


async def trivial(ctx: CollectorContext) -> None:
    await job_body(ctx.job.id)


COLLECTORS: dict[str, Collector] = {"news": trivial}


class Ours:
    name = "this project"
    recovery = "automatic: rescue after the 15 s rescue timeout (default), checked every 2 s"

    async def set_up(self, url: URL) -> None:
        engine = create_engine(url, null_pool=True)
        await init_db(engine, environment=Environment.TEST)
        await engine.dispose()
        conn = await connect(url)
        try:
            await conn.execute(
                "INSERT INTO analysts (email, name) VALUES ('bench@example.com', 'bench')"
            )
        finally:
            await conn.close()

    async def insert_many(self, url: URL, count: int) -> None:
        conn = await connect(url)
        try:
            await conn.execute(
                "INSERT INTO collection_jobs (analyst_id, collection_types, start_date, end_date)"
                " SELECT (SELECT id FROM analysts), '{news}', now() - interval '1 day', now()"
                " FROM generate_series(1, $1)",
                count,
            )
        finally:
            await conn.close()

    async def inserter(self, url: URL) -> _Inserter:
        conn = await connect(url)
        try:
            analyst = await conn.fetchval("SELECT id FROM analysts")
        finally:
            await conn.close()
        return _Inserter(await create_pool(url, size=1), analyst)

    def worker_argv(self, settings: Settings) -> list[str]:
        argv = [sys.executable, "-m", "app.worker", "benchmarks.peers.ours:COLLECTORS"]
        return [*argv, "--concurrency", str(settings.concurrency)]


class _Inserter:
    """The service's calls on a connection in autocommit mode, each its own transaction in
    one round trip (docs/jobs.md, "Creating jobs fast"): a pool of the driver's, as the
    worker holds, where pgqueuer holds one asyncpg connection and procrastinate a pool."""

    def __init__(self, pool: asyncpg.Pool, analyst: uuid.UUID) -> None:
        self._pool, self._analyst = pool, analyst

    async def insert(self) -> str:
        now = datetime.now(UTC)
        async with self._pool.acquire() as conn:
            job = await jobs.create_job(
                conn,
                analyst_id=self._analyst,
                collection_types=["news"],
                start_date=now - timedelta(days=1),
                end_date=now,
            )
        return str(job.id)

    async def cancel(self, key: str) -> None:
        async with self._pool.acquire() as conn:
            await jobs.cancel_job(conn, key)

    async def close(self) -> None:
        await self._pool.close()
