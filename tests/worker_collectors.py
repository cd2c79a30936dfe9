"""Collectors for the worker's tests, importable by a worker process (`python -m app.worker
tests.worker_collectors:STEADY`): they record what they saw in the database's own table
`collector_runs` when one exists, so a test can count runs across processes."""

from __future__ import annotations

import asyncio
import os
import time

import asyncpg

from app.db.urls import asyncpg_connect_args, parse_database_url
from app.worker import CollectorContext, FinalError
from app.worker.collectors import Collector

STEP_SECONDS = float(os.environ.get("COLLECTOR_STEP_SECONDS", "0.05"))


async def steady(ctx: CollectorContext) -> None:
    """Ten steps from where the type stopped, a report and a log each."""
    start = int(ctx.resume_from // 10)
    for step in range(start, 10):
        await asyncio.sleep(STEP_SECONDS)
        await ctx.report(10 * (step + 1))
        await ctx.log("success", records_collected=step)


STOPPED_AT: dict[object, float] = {}
"""In-process tests: job id -> when its `forever` collector was cancelled (monotonic)."""


async def forever(ctx: CollectorContext) -> None:
    await ctx.report(5)
    try:
        while True:
            await asyncio.sleep(3600)
    except asyncio.CancelledError:
        STOPPED_AT[ctx.job.id] = time.monotonic()
        raise


async def broken(ctx: CollectorContext) -> None:
    raise FinalError("the source refused our credentials")


STEADY: dict[str, Collector] = {"news": steady, "disclosure": steady}
FOREVER: dict[str, Collector] = {"news": forever}
BROKEN: dict[str, Collector] = {"news": steady, "disclosure": broken}


async def blocking(ctx: CollectorContext) -> None:
    """Blocks its event loop (a CPU-bound or badly written collector) for 3 s."""
    time.sleep(float(os.environ.get("COLLECTOR_BLOCK_SECONDS", "3")))
    await ctx.report(100)


BLOCKING: dict[str, Collector] = {"news": blocking}


_counting_pool: asyncpg.Pool | None = None
_pool_made = asyncio.Lock()


async def counted(ctx: CollectorContext) -> None:
    """Records each run in the test's own tables: `collector_live` has one row per running
    collector (its primary key refuses a second live run of one job's type, which is then
    counted in `collector_overlaps`), `collector_runs` one row per finished run."""
    global _counting_pool
    async with _pool_made:  # jobs start together: one pool for all of them
        if _counting_pool is None:
            _counting_pool = await asyncpg.create_pool(
                **asyncpg_connect_args(parse_database_url(os.environ["DATABASE_URL"])),
                min_size=1,
                max_size=2,
            )
    key = (ctx.job.id, ctx.collection_type)
    try:
        await _counting_pool.execute("INSERT INTO collector_live VALUES ($1, $2)", *key)
    except asyncpg.UniqueViolationError:
        await _counting_pool.execute("INSERT INTO collector_overlaps VALUES ($1, $2)", *key)
        raise
    try:
        await ctx.report(50)
        await asyncio.sleep(0.01)
    finally:
        await _counting_pool.execute(
            "DELETE FROM collector_live WHERE job_id = $1 AND type = $2", *key
        )
    await _counting_pool.execute("INSERT INTO collector_runs VALUES ($1, $2)", *key)


COUNTED: dict[str, Collector] = {"news": counted}


_FAILED_ONCE: set[tuple[object, str]] = set()


async def flaky(ctx: CollectorContext) -> None:
    """Fails once per job and type with an error of its own (a source that hiccups), then
    collects like `steady`."""
    key = (ctx.job.id, ctx.collection_type)
    if key not in _FAILED_ONCE:
        _FAILED_ONCE.add(key)
        raise ConnectionResetError("the news source reset the connection")
    await steady(ctx)


FLAKY: dict[str, Collector] = {"news": flaky}

AT_ONCE: dict[object, list[int]] = {}
"""In-process tests: job id -> [types collecting now, the most at once]."""


async def counting_at_once(ctx: CollectorContext) -> None:
    seen = AT_ONCE.setdefault(ctx.job.id, [0, 0])
    seen[0] += 1
    seen[1] = max(seen[1], seen[0])
    try:
        await asyncio.sleep(0.2)
        await ctx.report(100)
    finally:
        seen[0] -= 1


AT_ONCE_COLLECTORS: dict[str, Collector] = dict.fromkeys(
    ("news", "disclosure", "stock_price", "financial_statement", "research_report"),
    counting_at_once,
)
