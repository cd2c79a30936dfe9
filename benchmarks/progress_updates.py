"""Throughput of the job service against raw asyncpg doing the same work.

    python -m benchmarks.progress_updates [--workers 8] [--seconds 3] [--rounds 3]

Progress: --workers concurrent workers, each on its own connection and its own running job,
send reports for --seconds, in alternating rounds: through `report_progress` on an
autocommit connection (the worker set-up docs/jobs.md recommends), as the very same UPDATE
statement sent with raw asyncpg (autocommit too), and, for comparison, through
`report_progress` in a session that commits each report (BEGIN, UPDATE, COMMIT).
Logs: batches of --batch rows written with `add_job_logs` and with asyncpg's
`copy_records_to_table`, alternately. Prints the median rate of each and the ratio.
Runs in a scratch database on the embedded server (or DATABASE_URL's), dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db.embedded import database_url
from app.db.engine import connect, create_engine
from app.db.reset.init_db import init_db
from app.db.settings import Environment, load_settings
from app.models import CollectionType
from app.services import collection_jobs as jobs
from app.testing.factories import make_running_job
from benchmarks.scratch import admin

TYPES = list(CollectionType)


def percent(i: int) -> float:
    return (i % 1000) / 10


async def make_jobs(engine: AsyncEngine, count: int) -> list[uuid.UUID]:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        made = [(await make_running_job(session, TYPES)).id for _ in range(count)]
        await session.commit()
        return made


async def for_a_while(seconds: float, step: Callable[[int], Awaitable[None]]) -> int:
    """Call step(i) until `seconds` have passed; returns how many calls finished."""
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline:
        await step(i)
        i += 1
    return i


async def service_round(
    engine: AsyncEngine, job_ids: list[uuid.UUID], seconds: float, *, autocommit: bool
) -> float:
    """Workers report through the service: on an autocommit connection (the recommended
    worker set-up), or in a session that commits each report (BEGIN, UPDATE, COMMIT)."""

    async def worker(job_id: uuid.UUID) -> int:
        async with engine.connect() as conn:
            if autocommit:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")

                async def step(i: int) -> None:
                    await jobs.report_progress(conn, job_id, TYPES[i % len(TYPES)], percent(i))

                return await for_a_while(seconds, step)
            async with AsyncSession(bind=conn) as session:

                async def step_in_session(i: int) -> None:
                    await jobs.report_progress(session, job_id, TYPES[i % len(TYPES)], percent(i))
                    await session.commit()

                return await for_a_while(seconds, step_in_session)

    counts = await asyncio.gather(*(worker(job_id) for job_id in job_ids))
    return sum(counts) / seconds


async def raw_round(
    engine: AsyncEngine, url: URL, job_ids: list[uuid.UUID], seconds: float
) -> float:
    compiled = jobs.PROGRESS_STATEMENT.compile(dialect=engine.dialect)
    names = list(compiled.positiontup or [])
    constants = {}  # the statement's own literals, as the driver wants them
    for name, value in compiled.params.items():
        process = compiled.binds[name].type.bind_processor(engine.dialect)
        constants[name] = process(value) if process else value

    async def worker(job_id: uuid.UUID) -> int:
        conn = await connect(url)
        try:

            async def step(i: int) -> None:
                values = {
                    "job_id": job_id,
                    "collection_type": TYPES[i % len(TYPES)].value,
                    "percent": percent(i),
                    "run_started_at": None,
                }
                params = [values.get(name, constants[name]) for name in names]
                await conn.fetchrow(compiled.string, *params)

            return await for_a_while(seconds, step)
        finally:
            await conn.close()

    counts = await asyncio.gather(*(worker(job_id) for job_id in job_ids))
    return sum(counts) / seconds


def entries(n: int) -> list[jobs.LogEntry]:
    now = datetime.now(UTC)
    return [
        jobs.LogEntry(TYPES[i % len(TYPES)], "success", i, f"batch row {i}", now, now)
        for i in range(n)
    ]


async def service_insert(
    engine: AsyncEngine, job_id: uuid.UUID, batch: list[jobs.LogEntry]
) -> float:
    async with AsyncSession(engine) as session:
        started = time.perf_counter()
        await jobs.add_job_logs(session, job_id, batch)
        await session.commit()
        return len(batch) / (time.perf_counter() - started)


async def copy_insert(url: URL, job_id: uuid.UUID, batch: list[jobs.LogEntry]) -> float:
    conn = await connect(url)
    try:
        analyst_id = await conn.fetchval(
            "SELECT analyst_id FROM collection_jobs WHERE id = $1", job_id
        )
        records = [
            (
                analyst_id,
                job_id,
                str(e.collection_type),
                str(e.status),
                e.records_collected,
                e.message,
                e.started_at,
                e.completed_at,
            )
            for e in batch
        ]
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "data_collection_logs",
            records=records,
            columns=[
                "analyst_id",
                "collection_job_id",
                "collection_type",
                "status",
                "records_collected",
                "message",
                "started_at",
                "completed_at",
            ],
        )
        return len(batch) / (time.perf_counter() - started)
    finally:
        await conn.close()


def report(label: str, ours: list[float], theirs: list[float], unit: str, target: float) -> None:
    mine, raw = statistics.median(ours), statistics.median(theirs)
    print(f"  service  {mine:12,.0f} {unit}   (rounds: {', '.join(f'{x:,.0f}' for x in ours)})")
    print(f"  {label:<8} {raw:12,.0f} {unit}   (rounds: {', '.join(f'{x:,.0f}' for x in theirs)})")
    print(f"  ratio    {mine / raw:12.2f}   (target {target} or better)")


async def run(url: URL, args: argparse.Namespace) -> None:
    engine = create_engine(url, pool_size=args.workers, application_name="bench-progress")
    try:
        await init_db(engine, environment=Environment.DEVELOPMENT, force=True)
        job_ids = await make_jobs(engine, args.workers)
        print(
            f"progress reports: {args.workers} workers, {args.rounds} rounds of "
            f"{args.seconds:g} s each way"
        )
        ours, theirs, in_session = [], [], []
        for _ in range(args.rounds):
            ours.append(await service_round(engine, job_ids, args.seconds, autocommit=True))
            theirs.append(await raw_round(engine, url, job_ids, args.seconds))
            in_session.append(await service_round(engine, job_ids, args.seconds, autocommit=False))
        report("asyncpg", ours, theirs, "updates/s", 0.7)
        print(
            f"  service in a session, a transaction per report: "
            f"{statistics.median(in_session):,.0f} updates/s "
            f"({statistics.median(in_session) / statistics.median(theirs):.2f} of raw)"
        )

        print(f"log rows: {args.batches} batches of {args.batch:,} rows each way")
        ours, theirs = [], []
        for _ in range(args.batches):
            ours.append(await service_insert(engine, job_ids[0], entries(args.batch)))
            theirs.append(await copy_insert(url, job_ids[0], entries(args.batch)))
        report("COPY", ours, theirs, "rows/s   ", 0.5)
    finally:
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    settings = load_settings()
    base = await database_url(settings, settings.environment())
    scratch = base.set(database="bench_progress")
    await admin(base, f'DROP DATABASE IF EXISTS "{scratch.database}" WITH (FORCE)')
    await admin(base, f'CREATE DATABASE "{scratch.database}"')
    try:
        await run(scratch, args)
    finally:
        await admin(base, f'DROP DATABASE IF EXISTS "{scratch.database}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
