"""Collectors for the worker's tests, importable by a worker process (`python -m app.worker
tests.worker_collectors:STEADY`): they record what they saw in the database's own table
`collector_runs` when one exists, so a test can count runs across processes."""

from __future__ import annotations

import asyncio
import os
import time

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


async def forever(ctx: CollectorContext) -> None:
    await ctx.report(5)
    while True:
        await asyncio.sleep(3600)


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
