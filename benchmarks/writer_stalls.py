"""What a steady writer of data_collection_logs sees while something else runs.

One INSERT and one UPDATE of a random row every 2 ms on a fixed schedule; each write's
latency is measured from its scheduled time, so time spent waiting counts. Beside it: a
sampler that reads the writer's wait event every 5 ms (how long it waited on a lock, and
on what during its longest stall), and a thread that flushes 8 kB to a file on the
server's disk every 2 ms (`fdatasync`, as a commit does): a stall that is no lock wait and
that the disk alone also shows is I/O. Used by migration_lock, safe_operations and
index_build_io.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import URL

from app.db.embedded import data_folder
from app.db.engine import connect
from app.db.settings import Settings

PERIOD = 0.002


@dataclass
class Result:
    wall: float
    latencies: list[float]
    flushes: list[float] = field(default_factory=list)
    scheduled: list[float] = field(default_factory=list)
    """When each write was due (perf_counter), in the order of `latencies`."""
    waits: list[tuple[float, str]] = field(default_factory=list)
    """The writer's wait event, sampled every 5 ms: (perf_counter, "Type/Event" or "-")."""

    @property
    def stall_ms(self) -> float:
        return max(self.latencies, default=0) * 1000

    @property
    def lock_wait_ms(self) -> float:
        """The longest run of samples in which the writer waited on a lock."""
        longest, since = 0.0, None
        for at, event in self.waits:
            if event.startswith("Lock/") and since is None:
                since = at
            elif not event.startswith("Lock/") and since is not None:
                longest, since = max(longest, at - since), None
        if since is not None:  # still waiting at the last sample
            longest = max(longest, self.waits[-1][0] - since)
        return longest * 1000

    @property
    def longest_stall_waited_on(self) -> str:
        """What the writer was seen waiting on during its longest stall, most seen first."""
        if not self.latencies or not self.scheduled:
            return "-"
        worst = max(range(len(self.latencies)), key=self.latencies.__getitem__)
        start, end = self.scheduled[worst], self.scheduled[worst] + self.latencies[worst]
        seen = Counter(event for at, event in self.waits if start <= at <= end)
        total = sum(seen.values())
        return ", ".join(f"{e} {n * 100 // total}%" for e, n in seen.most_common(2)) or "-"

    @property
    def disk_flush_ms(self) -> str:
        """The longest `fdatasync` of the probe beside the server, or "-" without a probe."""
        return f"{max(self.flushes) * 1000:.0f} ms" if self.flushes else "-"

    def row(self, label: str) -> str:
        lat = sorted(self.latencies)
        p99 = lat[int(len(lat) * 0.99)] if lat else 0.0
        slow = sum(x > 0.1 for x in lat)
        return (
            f"{label:<28} {self.wall:8.2f} s  stall {self.stall_ms:8.1f} ms  "
            f"p99 {p99 * 1000:7.1f} ms  >100ms {slow:5d}  writes {len(lat)}  "
            f"lock wait {self.lock_wait_ms:.0f} ms  disk flush {self.disk_flush_ms}  "
            f"(longest stall: {self.longest_stall_waited_on})"
        )


class FlushProbe:
    """A thread that writes 8 kB and `fdatasync`s it every 2 ms in a file in `folder`,
    recording how long each flush took: what the disk makes any committer wait for."""

    def __init__(self, folder: Path | None) -> None:
        self.folder, self.flushes = folder, list[float]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FlushProbe:
        if self.folder is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        assert self.folder is not None
        with tempfile.TemporaryFile(dir=self.folder) as file:
            fd, page, k = file.fileno(), b"x" * 8192, 0
            os.pwrite(fd, bytes(16 << 20), 0)
            os.fsync(fd)
            while not self._stop.wait(PERIOD):
                os.pwrite(fd, page, (k % 2048) * 8192)
                started = time.perf_counter()
                os.fdatasync(fd)
                self.flushes.append(time.perf_counter() - started)
                k += 1


def probe_folder(settings: Settings, given: Path | None) -> Path | None:
    """Where the flush probe writes: --probe-dir, else beside the embedded server's data."""
    if given is not None and not (given.is_dir() and os.access(given, os.W_OK | os.X_OK)):
        raise SystemExit(f"--probe-dir {given} is not a folder this user can write in")
    if given is not None or settings.url() is not None:
        return given
    return data_folder(settings).parent


async def writer(
    url: URL,
    ids: list[object],
    stop: asyncio.Event,
    out: list[float],
    due: list[float],
    pid: asyncio.Future[int],
) -> None:
    """Write every 2 ms until `stop`: each write's lateness into `out`, when it was due
    into `due`."""
    conn = await connect(url)
    pid.set_result(conn.get_server_pid())
    analyst = await conn.fetchval("SELECT id FROM analysts LIMIT 1")
    start = time.perf_counter()
    k = 0
    try:
        while not stop.is_set():
            scheduled = start + k * PERIOD
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await conn.execute(
                "INSERT INTO data_collection_logs (analyst_id, collection_type, status, message)"
                " VALUES ($1, 'news', 'success', 'written during the migration')",
                analyst,
            )
            await conn.execute(
                "UPDATE data_collection_logs SET records_collected = records_collected + 1"
                " WHERE id = $1",
                random.choice(ids),
            )
            out.append(time.perf_counter() - scheduled)
            due.append(scheduled)
            if os.environ.get("BENCH_DEBUG") and out[-1] > 0.05:
                print(
                    f"  slow write at {time.time():.3f}: {out[-1] * 1000:.0f} ms", file=sys.stderr
                )
            k += 1
    finally:
        await conn.close()


async def sample_waits(
    url: URL, pid: int, stop: asyncio.Event, out: list[tuple[float, str]]
) -> None:
    """Backend `pid`'s wait event every 5 ms until `stop`."""
    conn = await connect(url)
    try:
        while not stop.is_set():
            event = await conn.fetchval(
                "SELECT coalesce(wait_event_type || '/' || wait_event, '-')"
                " FROM pg_stat_activity WHERE pid = $1",
                pid,
            )
            out.append((time.perf_counter(), event or "-"))
            await asyncio.sleep(0.005)
    finally:
        await conn.close()


async def hold_transaction(url: URL, seconds: float, started: asyncio.Event) -> None:
    conn = await connect(url)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE data_collection_logs IN ROW EXCLUSIVE MODE")
            started.set()
            await asyncio.sleep(seconds)
    finally:
        await conn.close()


async def measure_action(
    url: URL, action: Callable[[], Awaitable[None]], hold: float, probe: Path | None = None
) -> Result:
    """The writer's latencies while `action` runs (after `hold` s of an open transaction),
    and the flush probe's in `probe` over the same time."""
    conn = await connect(url)
    ids = [
        r[0]
        for r in await conn.fetch(
            "SELECT id FROM data_collection_logs TABLESAMPLE SYSTEM (1) LIMIT 20000"
        )
    ]
    await conn.close()
    latencies: list[float] = []
    due: list[float] = []
    waits: list[tuple[float, str]] = []
    stop, pid = asyncio.Event(), asyncio.get_running_loop().create_future()
    task = asyncio.create_task(writer(url, ids, stop, latencies, due, pid))
    await asyncio.sleep(1.0)  # steady state first
    latencies.clear()
    due.clear()
    sampler = asyncio.create_task(sample_waits(url, await pid, stop, waits))
    holder = None
    if hold:
        held = asyncio.Event()
        holder = asyncio.create_task(hold_transaction(url, hold, held))
        await held.wait()
    started = time.perf_counter()
    if os.environ.get("BENCH_DEBUG"):
        print(f"  migration starts at {time.time():.3f}", file=sys.stderr)
    with FlushProbe(probe) as flushes:
        await action()
        wall = time.perf_counter() - started
        await asyncio.sleep(0.5)
    stop.set()
    await task
    if holder:
        await holder
    await sampler
    return Result(wall, latencies, flushes.flushes, due, waits)
