"""This project's worker beside procrastinate and pgqueuer, on the same server, in one run.

    pip install -c constraints.txt -e '.[dev,bench]'     # the peers: an extra of their own
    python -m benchmarks.worker_peers [--jobs 20000] [--concurrency 8] [--only throughput]

Each runner is set up as its own documentation says (benchmarks/peers/), gets a fresh
database on the embedded server (or DATABASE_URL's) for every case, and runs the same
trivial job (it records the moment it starts and returns) with the same number of worker
processes and jobs at once per process. The runners go one after another, then again in
reverse order, so a machine that slows down over the run does not favour one of them.

What each figure means:
- throughput: N jobs inserted beforehand, then 1 (or 4) worker processes started; jobs/s
  from the first job's start to the last one's.
- pickup: one idle worker process; jobs inserted one at a time, 100 a second, each by its
  runner's own call in its own transaction; from the moment that call is made to the job
  starting (p50, p99, max). LISTEN/NOTIFY on, as each runner has it by default.
- cancel: one job running (it waits), cancelled by the runner's own call; from the call to
  the job's code seeing `CancelledError`. One untimed cancel first, for every runner: what
  a process does once (building or preparing its statement) is not a cancel's latency.
- recovery: two worker processes, one job running; the process running it is SIGKILLed;
  seconds until the job starts again in the other one ("never" after --recovery-limit).
Every time is this machine's clock, taken in the inserting process and the worker's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from app.db.embedded import database_url
from app.db.engine import connect
from app.db.settings import load_settings
from benchmarks.peers import Inserter, Peer, Settings, libpq_url
from benchmarks.scratch import admin

ROOT = Path(__file__).resolve().parents[1]
CASES = ("throughput", "pickup", "cancel", "recovery")


def peers() -> list[Peer]:
    from benchmarks.peers.ours import Ours
    from benchmarks.peers.pgqueuer_peer import Pgqueuer
    from benchmarks.peers.procrastinate_peer import Procrastinate

    return [Ours(), Procrastinate(), Pgqueuer()]


def read_events(folder: Path, kind: str) -> dict[str, tuple[float, int]]:
    """key -> (time, pid) of each `kind` line the workers wrote; the latest line wins."""
    found: dict[str, tuple[float, int]] = {}
    for path in folder.glob("*.log"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[0] == kind:
                found[parts[1]] = (float(parts[2]), int(parts[3]))
    return found


def starts(folder: Path) -> list[tuple[str, float, int]]:
    """Every start line, in order of time (a job run twice shows twice)."""
    found = []
    for path in folder.glob("*.log"):
        for line in path.read_text().splitlines():
            kind, key, at, pid = line.split()
            if kind == "start":
                found.append((key, float(at), int(pid)))
    return sorted(found, key=lambda s: s[1])


class Workers:
    """Worker processes of one runner, their output in the case's folder."""

    def __init__(self, peer: Peer, url: URL, settings: Settings, folder: Path, mode: str):
        self.argv = peer.worker_argv(settings)
        self.env = {
            **os.environ,
            "DATABASE_URL": url.render_as_string(hide_password=False),
            "APP_ENV": "test",
            "BENCH_PG_DSN": libpq_url(url),
            "BENCH_DIR": str(folder),
            "BENCH_MODE": mode,
            "BENCH_RECIPE_CRON": "* * * * * *",  # procrastinate's recipe, every second
            "PYTHONPATH": str(ROOT),
        }
        self.folder = folder
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, count: int) -> None:
        for n in range(count):
            log = open(self.folder / f"worker-{len(self.processes)}-{n}.out", "wb")  # noqa: SIM115
            self.processes.append(
                subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
            )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@asynccontextmanager
async def fresh_database(base: URL, peer: Peer) -> Any:
    url = base.set(database=f"bench_peers_{uuid.uuid4().hex[:8]}")
    await admin(base, f'CREATE DATABASE "{url.database}"')
    try:
        await peer.set_up(url)
        yield url
    finally:
        await admin(base, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


@contextmanager
def scratch_folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as folder:
        yield Path(folder)


def has(folder: Path, kind: str, key: str) -> Callable[[], bool]:
    return lambda: key in read_events(folder, kind)


async def wait_for(check: Callable[[], bool], limit: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(every)
    return False


async def server_work(url: URL) -> tuple[int, int]:
    """The database's commits and rows written so far (`pg_stat_database`)."""
    conn = await connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted"
            " FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row[0]), int(row[1])


async def throughput(peer: Peer, base: URL, s: Settings, jobs: int, processes: int) -> str:
    """jobs/s, and the server's work per job while draining: commits (every session's,
    heartbeats included) and rows written."""
    async with fresh_database(base, peer) as url:
        await peer.insert_many(url, jobs)
        await asyncio.sleep(1.5)  # statistics are flushed at most once a second
        before = await server_work(url)
        with scratch_folder() as folder:
            workers = Workers(peer, url, s, folder, "trivial")
            workers.start(processes)
            try:
                done = await wait_for(
                    lambda: sum(1 for p in folder.glob("*.log") for _ in p.open()) >= jobs,
                    limit=600,
                    every=0.5,
                )
            finally:
                workers.stop()
            seen = starts(folder)
        await asyncio.sleep(1.5)
        after = await server_work(url)
    if not done:
        return f"only {len(seen)} of {jobs} started within 600 s"
    span = seen[-1][1] - seen[0][1]
    twice = len(seen) - len({key for key, _, _ in seen})
    commits, rows = ((a - b) / jobs for a, b in zip(after, before, strict=True))
    figure = f"{len(seen) / span:8.0f} jobs/s  ({commits:.2f} commits, {rows:.1f} rows a job)"
    return figure + (f" ({twice} run twice)" if twice else "")


def percentiles(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"p50 {statistics.median(ms):6.1f} ms  p99 {p99:6.1f} ms  max {ms[-1]:6.1f} ms"


@asynccontextmanager
async def waiting_workers(
    peer: Peer, base: URL, s: Settings, mode: str, processes: int
) -> AsyncIterator[tuple[Path, Inserter]]:
    """`processes` idle workers on a fresh database, and a connection to insert jobs; the
    folder their job functions write to."""
    async with fresh_database(base, peer) as url:
        with scratch_folder() as folder:
            workers = Workers(peer, url, s, folder, mode)
            workers.start(processes)
            inserter = await peer.inserter(url)
            try:
                await asyncio.sleep(3)  # up, and waiting
                yield folder, inserter
            finally:
                await inserter.close()
                workers.stop()


async def pickup(peer: Peer, base: URL, s: Settings, count: int) -> str:
    sent: dict[str, float] = {}
    async with waiting_workers(peer, base, s, "trivial", 1) as (folder, inserter):
        began = time.monotonic()
        for n in range(count):  # a steady 100 a second
            await asyncio.sleep(max(0.0, began + n / 100 - time.monotonic()))
            at = time.time()
            sent[await inserter.insert()] = at
        await wait_for(lambda: len(read_events(folder, "start")) >= count, limit=10)
        seen = read_events(folder, "start")
    latencies = [seen[key][0] - at for key, at in sent.items() if key in seen]
    missing = len(sent) - len(latencies)
    return percentiles(latencies) + (f"  ({missing} never started)" if missing else "")


async def cancel(peer: Peer, base: URL, s: Settings, count: int) -> str:
    latencies: list[float] = []
    async with waiting_workers(peer, base, s, "hold", 1) as (folder, inserter):
        for n in range(count + 1):  # the first, untimed: one-time costs are not a cancel's
            key = await inserter.insert()
            if not await wait_for(has(folder, "start", key), 10):
                return "a job never started"
            at = time.time()
            await inserter.cancel(key)
            if not await wait_for(has(folder, "cancel", key), 10):
                return "not seen by the job's code within 10 s"
            if n:
                latencies.append(read_events(folder, "cancel")[key][0] - at)
    return percentiles(latencies)


async def recovery(peer: Peer, base: URL, s: Settings, limit: float) -> str:
    async with waiting_workers(peer, base, s, "hold", 2) as (folder, inserter):
        key = await inserter.insert()
        if not await wait_for(has(folder, "start", key), 10):
            return "the job never started"
        victim = read_events(folder, "start")[key][1]
        killed = time.time()
        os.kill(victim, signal.SIGKILL)

        def again() -> bool:
            return any(k == key and pid != victim for k, _, pid in starts(folder))

        if not await wait_for(again, limit, every=0.1):
            return f"never (not within {limit:.0f} s)"
        rerun = next(at for k, at, pid in starts(folder) if k == key and pid != victim)
    return f"{rerun - killed:6.1f} s"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs drained (throughput)")
    parser.add_argument("--concurrency", type=int, default=8, help="jobs at once per process")
    parser.add_argument("--pickups", type=int, default=1000, help="jobs timed at 100/s")
    parser.add_argument("--cancels", type=int, default=20)
    parser.add_argument("--recovery-limit", type=float, default=90.0)
    parser.add_argument("--only", choices=CASES, action="append", help="run just these cases")
    parser.add_argument("--once", action="store_true", help="one order only")
    args = parser.parse_args()
    settings = load_settings()
    base = await database_url(settings, settings.environment())
    s = Settings(concurrency=args.concurrency)
    cases = args.only or list(CASES)
    order = peers()
    when = time.strftime("%Y-%m-%d %H:%M %Z")
    print(f"# {when}, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    for round_ in [order] if args.once else [order, order[::-1]]:
        print(f"# order: {', '.join(p.name for p in round_)}")
        for peer in round_:
            if "throughput" in cases:
                for processes in (1, 4):
                    figure = await throughput(peer, base, s, args.jobs, processes)
                    print(f"{peer.name:<20} throughput, {processes} process(es) {figure}")
            if "pickup" in cases:
                print(f"{peer.name:<20} pickup      {await pickup(peer, base, s, args.pickups)}")
            if "cancel" in cases:
                print(f"{peer.name:<20} cancel      {await cancel(peer, base, s, args.cancels)}")
            if "recovery" in cases:
                figure = await recovery(peer, base, s, args.recovery_limit)
                print(f"{peer.name:<20} recovery    {figure}   ({peer.recovery})")
            sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
