"""How far a job's estimated finish is from its real one, with the demo collectors.

    python -m benchmarks.estimate_accuracy [--jobs 24] [--seed 7]

--jobs demo jobs (1-5 types each, 5-30 days, the demo's uneven speed per type and its
occasional transient error) run through one in-process worker (4 jobs at once, 4 types
of a job at once). For every completed job the runtime records the estimate it was given
when the job's progress first reached 10, 50 and 90 %, and its distance from the real
finish: the figure `collection_worker_estimate_error_seconds` exports. Printed per point:
median and p90 of that error in seconds, and relative to the job's run time. Runs in a
scratch database on the embedded server (or DATABASE_URL's), dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from app.db.engine import create_engine, create_sessionmaker, session_scope
from app.models import Analyst, CollectionJob
from app.services import collection_jobs as jobs
from app.worker import Worker, WorkerSettings
from app.worker.demo import COLLECTORS, SECONDS_PER_DAY
from app.worker.metrics import ESTIMATE_POINTS, Observer
from benchmarks.scratch import initialized_database


class Errors(Observer):
    def __init__(self) -> None:
        self.errors: list[Mapping[int, float]] = []

    def estimate_errors(self, errors: Mapping[int, float]) -> None:
        self.errors.append(dict(errors))


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    async with initialized_database("bench_estimate") as url:
        engine = create_engine(url, null_pool=True)
        now = datetime.now(UTC)
        async with session_scope(create_sessionmaker(engine)) as session:
            analyst = Analyst(email="estimate@example.com", name="bench")
            session.add(analyst)
            await session.flush()
            for _ in range(args.jobs):
                types = rng.sample(sorted(SECONDS_PER_DAY), rng.randint(1, 5))
                days = rng.randint(5, 30)
                await jobs.create_job(
                    session,
                    analyst_id=analyst.id,
                    collection_types=types,
                    start_date=now - timedelta(days=days),
                    end_date=now,
                )
        observer = Errors()
        worker = Worker(url, COLLECTORS, WorkerSettings(concurrency=4), metrics=observer)
        await worker.run(until_empty=True)
        async with create_sessionmaker(engine)() as session:
            finished = (await session.scalars(select(CollectionJob))).all()
        await engine.dispose()
        runs = [
            (job.completed_at - job.started_at).total_seconds()
            for job in finished
            if job.completed_at and job.started_at
        ]
        typical = statistics.median(runs)
        print(f"{len(observer.errors)} jobs completed; run time median {typical:.1f} s")
        for point in ESTIMATE_POINTS:
            seen = [e[point] for e in observer.errors if point in e]
            if not seen:
                print(f"at {point:>2} %: no estimate")
                continue
            print(
                f"at {point:>2} %: error median {statistics.median(seen):5.2f} s, p90 "
                f"{p90(seen):5.2f} s ({statistics.median(seen) / typical:4.0%} and "
                f"{p90(seen) / typical:4.0%} of the median run time; n={len(seen)})"
            )


if __name__ == "__main__":
    asyncio.run(main())
