"""How fast an idle worker starts a new job, and stops a cancelled one.

    python -m benchmarks.worker_latency [--jobs 200] [--poll-interval 2]

One worker process (`python -m app.worker`, the demo's settings otherwise) waits on a
scratch database; jobs are created one at a time, 20-60 ms apart, each by its own committed
transaction. Pickup latency is from the creating commit's return to the collector's first
line (both clocks are this machine's); cancel latency from the cancel's commit to the
collector's `CancelledError`. Both count from the moment the commit is sent, so they
include the commit's own round trip. Printed: p50, p99 and max, with LISTEN and poll-only. Runs on
the embedded server (or DATABASE_URL's), in a scratch database dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import URL

from app.db.engine import create_engine, create_sessionmaker, session_scope
from app.models import Analyst
from app.services import collection_jobs as jobs
from app.worker import CollectorContext
from app.worker.collectors import Collector
from benchmarks.scratch import initialized_database

ROOT = Path(__file__).resolve().parents[1]


async def timed(ctx: CollectorContext) -> None:
    """Writes when it started, then waits to be cancelled (and writes when it was)."""
    with open(os.environ["BENCH_TIMES"], "a") as times:
        times.write(f"start {ctx.job.id} {time.time()}\n")
    try:
        if os.environ.get("BENCH_HOLD") == "1":
            await asyncio.sleep(3600)
    except asyncio.CancelledError:
        with open(os.environ["BENCH_TIMES"], "a") as times:
            times.write(f"cancel {ctx.job.id} {time.time()}\n")
        raise


COLLECTORS: dict[str, Collector] = {"news": timed}


def percentiles(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"p50 {statistics.median(ms):7.1f} ms  p99 {p99:7.1f} ms  max {ms[-1]:7.1f} ms"


def read_times(path: Path, kind: str) -> dict[str, float]:
    found = {}
    for line in path.read_text().splitlines():
        what, job, at = line.split()
        if what == kind:
            found[job] = float(at)
    return found


async def run_case(url: URL, count: int, listen: bool, poll: float, hold: bool) -> list[float]:
    times = Path(tempfile.mkstemp(prefix="bench-times-")[1])
    env = {
        **os.environ,
        "DATABASE_URL": url.render_as_string(hide_password=False),
        "APP_ENV": "test",
        "BENCH_TIMES": str(times),
        "BENCH_HOLD": "1" if hold else "0",
        "PYTHONPATH": str(ROOT),
    }
    argv = [sys.executable, "-m", "app.worker", "benchmarks.worker_latency:COLLECTORS"]
    argv += ["--poll-interval", str(poll), "--concurrency", "4"]
    argv += [] if listen else ["--no-listen"]
    worker = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    engine = create_engine(url)
    sessions = create_sessionmaker(engine)
    committed: dict[str, float] = {}
    try:
        async with session_scope(sessions) as session:
            analyst = Analyst(email=f"{uuid.uuid4().hex[:8]}@example.com", name="bench")
            session.add(analyst)
        await asyncio.sleep(2)  # the worker is up and waiting
        now = datetime.now(UTC)
        for _ in range(count):
            async with session_scope(sessions) as session:
                job = await jobs.create_job(
                    session,
                    analyst_id=analyst.id,
                    collection_types=["news"],
                    start_date=now - timedelta(days=1),
                    end_date=now,
                )
                committed[str(job.id)] = time.time()  # as the commit is sent
            if hold:  # wait until it runs, then cancel it and time the cancel
                while str(job.id) not in read_times(times, "start"):
                    await asyncio.sleep(0.005)
                async with session_scope(sessions) as session:
                    await jobs.cancel_job(session, job.id)
                    committed[str(job.id)] = time.time()
                while str(job.id) not in read_times(times, "cancel"):
                    await asyncio.sleep(0.005)
            await asyncio.sleep(random.uniform(0.02, 0.06))
        await asyncio.sleep(poll + 1)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        await engine.dispose()
    seen = read_times(times, "cancel" if hold else "start")
    times.unlink()
    return [seen[job] - at for job, at in committed.items() if job in seen]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--poll-interval", type=float, default=2.0)
    args = parser.parse_args()
    async with initialized_database("bench_worker") as url:
        cases = [
            ("pickup, LISTEN", True, False),
            ("pickup, poll only", False, False),
            ("cancel, LISTEN", True, True),
            ("cancel, poll only", False, True),
        ]
        for name, listen, hold in cases:
            count = args.jobs if not hold else max(20, args.jobs // 5)
            latencies = await run_case(url, count, listen, args.poll_interval, hold)
            print(f"{name:<20} n={len(latencies):<4} {percentiles(latencies)}")


if __name__ == "__main__":
    asyncio.run(main())
