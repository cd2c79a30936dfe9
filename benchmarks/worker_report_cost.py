"""What the worker runtime adds to each progress report, against the service alone.

    python -m benchmarks.worker_report_cost [--collectors 8] [--seconds 3] [--rounds 3]
                                            [--pool-size 5]

--collectors concurrent collectors in one process, each on its own running job (5 types),
report for --seconds, in alternating rounds:
- service alone: `report_progress` on an autocommit connection each collector keeps (the
  set-up docs/jobs.md recommends to a hand-written worker);
- runtime: `ctx.report(percent)` as a collector calls it, through the worker's `Reporter`
  (a connection from the worker's pool, of `--pool-size` as `--pool-size` of the worker
  command, 5 by default; the fence, the stuck-job clock, the estimate points), with
  metrics off and with `PrometheusMetrics` on. With fewer connections than collectors,
  reports wait for one: `--pool-size 8` measures the runtime's own cost alone.
Prints the median reports/s of each and its ratio to the service alone. Runs in a scratch
database on the embedded server (or DATABASE_URL's), dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import create_engine, create_pool
from app.models import CollectionJob, CollectionType
from app.services import collection_jobs as jobs
from app.testing.factories import make_running_job
from app.worker.metrics import NO_METRICS, Observer, PrometheusMetrics
from app.worker.reporting import Reporter
from app.worker.runtime import WorkerSettings
from benchmarks.progress_updates import for_a_while, percent
from benchmarks.scratch import initialized_database

TYPES = list(CollectionType)
Report = Callable[[int], Awaitable[None]]


async def service_alone(url: URL, running: list[CollectionJob], seconds: float) -> float:
    engine = create_engine(url, pool_size=len(running), pre_ping=False)
    try:
        conns = [await engine.connect() for _ in running]
        for n, conn in enumerate(conns):
            conns[n] = await conn.execution_options(isolation_level="AUTOCOMMIT")

        def reporter(job: CollectionJob, n: int) -> Report:
            async def report(i: int) -> None:
                kind = TYPES[i % len(TYPES)]
                await jobs.report_progress(
                    conns[n], job.id, kind, percent(i), run_started_at=job.started_at
                )

            return report

        done = await race([reporter(job, n) for n, job in enumerate(running)], seconds)
        for conn in conns:
            await conn.close()
        return done
    finally:
        await engine.dispose()


async def runtime(
    url: URL, running: list[CollectionJob], seconds: float, observer: Observer, pool_size: int
) -> float:
    # The worker's pool, as `Worker.run` makes it.
    pool = await create_pool(url, size=pool_size, application_name="collection-worker")
    try:

        class Sender:  # as a running job's `JobRun.send` sends, without the outage wait
            async def send(self, what: str, call: Any) -> Any:
                async with pool.acquire() as conn:
                    return await call(conn)

        def reporter(job: CollectionJob) -> Report:
            assert job.started_at is not None
            run = jobs.Run(job.id, job.started_at, uuid.uuid4())
            through = Reporter(Sender(), run, lambda _job: None, observer)

            async def report(i: int) -> None:
                await through.report(TYPES[i % len(TYPES)], percent(i))

            return report

        return await race([reporter(job) for job in running], seconds)
    finally:
        await pool.close()


async def race(reports: list[Report], seconds: float) -> float:
    counts = await asyncio.gather(*(for_a_while(seconds, report) for report in reports))
    return sum(counts) / seconds


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collectors", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pool-size", type=int, default=WorkerSettings().pool_size)
    args = parser.parse_args()
    async with initialized_database("bench_report") as url:
        engine = create_engine(url, null_pool=True)
        async with AsyncSession(engine, expire_on_commit=False) as session:
            running = [await make_running_job(session, TYPES) for _ in range(args.collectors)]
            await session.commit()
        await engine.dispose()
        metrics = PrometheusMetrics()
        rates: dict[str, list[float]] = {"service alone": [], "runtime": [], "runtime+metrics": []}
        for _ in range(args.rounds):
            rates["service alone"].append(await service_alone(url, running, args.seconds))
            for name, observer in (("runtime", NO_METRICS), ("runtime+metrics", metrics)):
                rate = await runtime(url, running, args.seconds, observer, args.pool_size)
                rates[name].append(rate)
        alone = statistics.median(rates["service alone"])
        for name, values in rates.items():
            rate = statistics.median(values)
            each = " / ".join(f"{v:,.0f}" for v in values)
            print(f"{name:<16} {rate:8,.0f} reports/s  ({each})  ratio {rate / alone:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
