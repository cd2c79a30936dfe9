"""One concurrent index build on the filled table under the steady writer, with settings.

    python -m benchmarks.index_build_io [--rows 20000000] [--runs 3] [SETTING=VALUE ...]

For trying what the build itself could change (parallel workers, maintenance_work_mem,
wal_compression): each run builds `CREATE INDEX CONCURRENTLY` on records_collected in
the table `benchmarks.safe_operations --keep` left (bench_ops_<rows>), in a session with
the given settings, and prints the writer's longest stall, its longest lock wait, the
disk probe's longest flush and what the writer waited on (benchmarks/writer_stalls.py).
Without settings the build runs as `safe.create_index` does (no parallel workers).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from sqlalchemy.engine import URL

from app.db.embedded import database_url
from app.db.engine import connect
from app.db.settings import load_settings
from benchmarks.scratch import exists
from benchmarks.writer_stalls import measure_action, probe_folder

BUILD = "CREATE INDEX CONCURRENTLY bench_io_idx ON data_collection_logs (records_collected)"


async def build(url: URL, settings: list[tuple[str, str]]) -> None:
    conn = await connect(url)
    try:
        for name, value in settings:
            await conn.execute("SELECT set_config($1, $2, false)", name, value)
        await conn.execute(BUILD)
    finally:
        await conn.execute("DROP INDEX IF EXISTS bench_io_idx")
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--probe-dir", type=Path, help="a folder on the server's disk")
    parser.add_argument("settings", nargs="*", metavar="SETTING=VALUE")
    args = parser.parse_args()
    pairs = [tuple(item.split("=", 1)) for item in args.settings]
    if any(len(pair) != 2 for pair in pairs):
        parser.error("settings are SETTING=VALUE")
    chosen = [("max_parallel_maintenance_workers", "0"), *((p[0], p[1]) for p in pairs)]
    settings = load_settings()
    base = await database_url(settings, settings.environment())
    url = base.set(database=f"bench_ops_{args.rows}")
    if not await exists(base, url.database):
        parser.error(
            f"no database {url.database}: fill it first with python -m "
            f"benchmarks.safe_operations --rows {args.rows} --keep"
        )
    probe = probe_folder(settings, args.probe_dir)
    print(", ".join(f"{name}={value}" for name, value in chosen))
    for run in range(1, args.runs + 1):
        result = await measure_action(url, lambda: build(url, chosen), 0.0, probe)
        print(
            f"run {run}: {result.wall:6.2f} s  stall {result.stall_ms:7.1f} ms  lock wait "
            f"{result.lock_wait_ms:4.0f} ms  disk flush {result.disk_flush_ms:>7}  "
            f"({result.longest_stall_waited_on})",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main())
