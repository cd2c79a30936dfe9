"""How far a job's estimated finish is from its real one, with the demo collectors.

    python -m benchmarks.estimate_accuracy [--jobs 48] [--seed 7]

--jobs demo jobs (1-5 types each, 5-30 days, the demo's uneven speed per type and its
occasional transient error) run through one in-process worker (4 jobs at once, 4 types
of a job at once). For every completed job the runtime records the estimate it was given
when the job's progress first reached 10, 50 and 90 %, and its distance from the real
finish: the figure `collection_worker_estimate_error_seconds` exports. Printed per point:
median and p90 of that error in seconds, and relative to the job's run time. Runs in a
scratch database on the embedded server (or DATABASE_URL's), dropped afterwards.

Beside it, from the same reports of the same run (each collector's reports are recorded
with their time), the service's formula replayed (a check: it matches what the runtime
recorded) and the one it replaced, the mean's projection alone
(`started_at + elapsed x 100 / mean`). Today's projects each type on its own once every
type has begun and takes the latest (elapsed x 100 / the slowest type's percent): the
job ends with its slowest type, and the mean is pulled ahead by the fast ones.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from app.db.engine import create_engine, create_sessionmaker, session_scope
from app.models import Analyst, CollectionJob, JobStatus
from app.services import collection_jobs as jobs
from app.services.collection_jobs import LogEntry
from app.worker import Worker, WorkerSettings
from app.worker.collectors import Collector, CollectorContext
from app.worker.collectors import Reporter as ReporterProtocol
from app.worker.demo import COLLECTORS, SECONDS_PER_DAY
from app.worker.metrics import ESTIMATE_POINTS, Observer
from benchmarks.scratch import initialized_database


class Errors(Observer):
    def __init__(self) -> None:
        self.errors: list[Mapping[int, float]] = []

    def estimate_errors(self, errors: Mapping[int, float]) -> None:
        self.errors.append(dict(errors))


Report = tuple[datetime, str, float]
"""When a collector reported, its type and its percent."""


@dataclass
class Recording:
    """A collector's reporter that also writes down each report, with its time."""

    inner: ReporterProtocol
    reports: list[Report]

    async def report(self, collection_type: str, percent: float) -> None:
        await self.inner.report(collection_type, percent)
        self.reports.append((datetime.now(UTC), collection_type, percent))

    async def log(self, collection_type: str, entry: LogEntry) -> None:
        await self.inner.log(collection_type, entry)


def recorded(collector: Collector, reports: dict[uuid.UUID, list[Report]]) -> Collector:
    async def run(ctx: CollectorContext) -> None:
        await collector(replace(ctx, _reporter=Recording(ctx._reporter, reports[ctx.job.id])))

    return run


Estimator = Callable[[list[float]], float]
"""The job's percents per type -> the percent the projection divides by (0: none)."""
ESTIMATORS: dict[str, Estimator] = {
    "slowest type": lambda percents: min(percents) or sum(percents) / len(percents),
    "mean (before)": lambda percents: sum(percents) / len(percents),
}


def replayed_errors(
    job: CollectionJob, reports: list[Report], estimator: Estimator
) -> dict[int, float]:
    """The estimator's error at 10, 50 and 90 % of the job's progress, replayed from its
    reports as the Reporter records the service's estimate."""
    assert job.started_at is not None and job.completed_at is not None
    progress: dict[str, float] = {}
    errors: dict[int, float] = {}
    for at, collection_type, percent in sorted(reports):
        progress[collection_type] = max(progress.get(collection_type, 0.0), percent)
        percents = [progress.get(t, 0.0) for t in job.collection_types]
        overall = sum(percents) / len(percents)
        divisor = estimator(percents)
        if divisor <= 0:
            continue
        finish = job.started_at + (at - job.started_at) * (100 / divisor)
        for point in ESTIMATE_POINTS:
            if overall >= point and point not in errors:
                errors[point] = abs((finish - job.completed_at).total_seconds())
    return errors


def summary(errors: Sequence[Mapping[int, float]], typical: float, point: int) -> str:
    seen = [e[point] for e in errors if point in e]
    if not seen:
        return "no estimate"
    return (
        f"median {statistics.median(seen):5.2f} s ({statistics.median(seen) / typical:4.0%}),"
        f" p90 {p90(seen):5.2f} s ({p90(seen) / typical:4.0%}), n={len(seen)}"
    )


def run_seconds(job: CollectionJob) -> float:
    assert job.started_at is not None and job.completed_at is not None
    return (job.completed_at - job.started_at).total_seconds()


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=48)
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
        reports: dict[uuid.UUID, list[Report]] = defaultdict(list)
        collectors = {name: recorded(c, reports) for name, c in COLLECTORS.items()}
        worker = Worker(url, collectors, WorkerSettings(concurrency=4), metrics=observer)
        await worker.run(until_empty=True)
        async with create_sessionmaker(engine)() as session:
            finished = [
                job
                for job in (await session.scalars(select(CollectionJob))).all()
                if job.status is JobStatus.COMPLETED
            ]
        await engine.dispose()
        typical = statistics.median(run_seconds(job) for job in finished)
        print(f"{len(finished)} jobs completed; run time median {typical:.1f} s")
        print("error of the estimate, from the real finish (and relative to that median):")
        for point in ESTIMATE_POINTS:
            recorded_here = summary(observer.errors, typical, point)
            print(f"at {point:>2} %, recorded by the runtime: {recorded_here}")
            for name, estimator in ESTIMATORS.items():
                errors = [replayed_errors(job, reports[job.id], estimator) for job in finished]
                print(f"        {name:>14} (replayed): {summary(errors, typical, point)}")


if __name__ == "__main__":
    asyncio.run(main())
