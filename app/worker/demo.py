"""Demo collectors: each simulates collecting one type over the job's date range, at its
own uneven speed, with progress, logs and an occasional transient error (retried).

    python -m app.worker app.worker.demo:COLLECTORS
"""

from __future__ import annotations

import asyncio
import random

from app.worker.collectors import Collector, CollectorContext

SECONDS_PER_DAY = {
    "news": 0.05,
    "disclosure": 0.12,
    "stock_price": 0.02,
    "financial_statement": 0.2,
    "research_report": 0.08,
}
"""How long a day of the range takes to 'collect', per type: uneven on purpose."""
TRANSIENT_ERROR_RATE = 0.01


async def collect(ctx: CollectorContext) -> None:
    days = max(1, (ctx.job.end_date - ctx.job.start_date).days)
    first = int(days * ctx.resume_from / 100)  # where an earlier attempt stopped
    for day in range(first, days):
        await asyncio.sleep(SECONDS_PER_DAY[ctx.collection_type] * random.uniform(0.5, 1.5))
        if random.random() < TRANSIENT_ERROR_RATE:
            raise ConnectionError(f"source of {ctx.collection_type} did not answer (simulated)")
        await ctx.report(100 * (day + 1) / days)
        if (day + 1) % 7 == 0 or day + 1 == days:
            await ctx.log("success", records_collected=random.randint(10, 500))


COLLECTORS: dict[str, Collector] = dict.fromkeys(SECONDS_PER_DAY, collect)
