"""Each safe operation on data_collection_logs beside the plain one, under a steady writer.

    python -m benchmarks.safe_operations [--rows 20000000] [--hold 5] [--keep]

The table is filled at the baseline and migrated to head; then, for each operation, the
plain statement (one transaction, no lock_timeout: what a plain `op.*` revision does) and
the `app.db.migrate.safe` operation run while a writer inserts and updates every 2 ms
(latency measured from each write's scheduled time), first alone, then right after another
session opened a transaction on the table that stays open for --hold seconds. Each is
undone before the next; the first case changes nothing (the control). Prints for each the
wall time, the longest write stall, the longest time the writer was seen waiting on a
lock, the longest `fdatasync` of a probe on the server's disk over the same time, and
what the writer waited on during its longest stall (see benchmarks/writer_stalls.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import URL

from app.db.embedded import database_url
from app.db.engine import connect, create_engine
from app.db.migrate import safe
from app.db.settings import PROJECT_ROOT, load_settings
from app.db.urls import parse_database_url
from benchmarks.scratch import admin, build_template, exists, migrate_with_alembic
from benchmarks.writer_stalls import measure_action, probe_folder

T = "data_collection_logs"
CASES: list[tuple[str, list[str], Callable[[], safe.Operation], list[str]]] = [
    # name, plain statements (one transaction), safe operation, undo
    (  # the control: what the writer sees from the machine alone, no change made
        "nothing for 5 s (control)",
        ["SELECT pg_sleep(5)"],
        lambda: safe.sql("SELECT pg_sleep(5)", reason="the control", blocks_writers=False),
        [],
    ),
    (
        "add nullable column",
        [f"ALTER TABLE {T} ADD COLUMN note TEXT"],
        lambda: safe.add_column(T, "note TEXT"),
        [f"ALTER TABLE {T} DROP COLUMN IF EXISTS note"],
    ),
    (
        "add column, constant default",
        [f"ALTER TABLE {T} ADD COLUMN retries INT DEFAULT 0"],
        lambda: safe.add_column(T, "retries INT DEFAULT 0"),
        [f"ALTER TABLE {T} DROP COLUMN IF EXISTS retries"],
    ),
    (
        "add foreign key",
        [
            f"ALTER TABLE {T} ADD CONSTRAINT bench_fk"
            " FOREIGN KEY (analyst_id) REFERENCES analysts(id)"
        ],
        lambda: safe.add_foreign_key("bench_fk", T, "analyst_id", "analysts", "id"),
        [f"ALTER TABLE {T} DROP CONSTRAINT IF EXISTS bench_fk"],
    ),
    (
        "add check constraint",
        [f"ALTER TABLE {T} ADD CONSTRAINT bench_check CHECK (records_collected >= 0)"],
        lambda: safe.add_check("bench_check", T, "records_collected >= 0"),
        [f"ALTER TABLE {T} DROP CONSTRAINT IF EXISTS bench_check"],
    ),
    (
        "set not null",
        [f"ALTER TABLE {T} ALTER COLUMN message SET NOT NULL"],
        lambda: safe.set_not_null(T, "message"),
        [
            f"ALTER TABLE {T} ALTER COLUMN message DROP NOT NULL",
            f"ALTER TABLE {T} DROP CONSTRAINT IF EXISTS {T}_message_nn_check",
        ],
    ),
    (
        "create index",
        [f"CREATE INDEX bench_idx ON {T}(records_collected)"],
        lambda: safe.create_index("bench_idx", T, "records_collected"),
        ["DROP INDEX IF EXISTS bench_idx"],
    ),
    (
        "unique constraint",
        [f"ALTER TABLE {T} ADD CONSTRAINT bench_unique UNIQUE (id, records_collected)"],
        lambda: safe.add_unique("bench_unique", T, "id, records_collected"),
        [
            f"ALTER TABLE {T} DROP CONSTRAINT IF EXISTS bench_unique",
            "DROP INDEX IF EXISTS bench_unique",
        ],
    ),
    (
        "drop index",
        ["DROP INDEX idx_data_collection_logs_analyst_id"],
        lambda: safe.drop_index("idx_data_collection_logs_analyst_id"),
        [f"CREATE INDEX IF NOT EXISTS idx_data_collection_logs_analyst_id ON {T}(analyst_id)"],
    ),
]


async def run_plain(url: URL, statements: list[str]) -> None:
    conn = await connect(url)
    try:
        async with conn.transaction():
            for statement in statements:
                await conn.execute(statement)
    finally:
        await conn.close()


async def run_safe(url: URL, operation: safe.Operation) -> None:
    engine = create_engine(url, null_pool=True)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(safe.run_on, operation, lock_retry_seconds=600)
    finally:
        await engine.dispose()


class Prepared:
    """A case in a process of its own, started (imports done) and waiting for the word:
    the writer must not pay for a Python start-up."""

    def __init__(self, proc: asyncio.subprocess.Process, label: str) -> None:
        self.proc, self.label = proc, label

    @classmethod
    async def start(cls, url: URL, name: str, how: str) -> Prepared:
        env = {**os.environ, "BENCH_URL": url.render_as_string(hide_password=False)}
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "benchmarks.safe_operations", "--apply", name, how),
            cwd=PROJECT_ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        await proc.stdout.readline()  # "ready"
        return cls(proc, f"{how} {name}")

    async def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        await self.proc.stdin.drain()
        if await self.proc.wait() != 0:
            raise RuntimeError(f"{self.label} failed")


async def apply(name: str, how: str) -> None:
    url = parse_database_url(os.environ["BENCH_URL"])
    _, plain, operation, _ = next(case for case in CASES if case[0] == name)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await (run_plain(url, plain) if how == "plain" else run_safe(url, operation()))


async def undo(url: URL, statements: list[str]) -> None:
    conn = await connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--hold", type=float, default=5.0)
    parser.add_argument(
        "--keep", action="store_true", help="keep the filled database and reuse it next time"
    )
    parser.add_argument("--probe-dir", type=Path, help="a folder on the server's disk")
    parser.add_argument("--apply", nargs=2, metavar=("CASE", "HOW"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.apply:
        await apply(*args.apply)
        return
    settings = load_settings()
    base = await database_url(settings, settings.environment())
    url = base.set(database=f"bench_ops_{args.rows}")
    probe = probe_folder(settings, args.probe_dir)
    if not (args.keep and await exists(base, url.database)):
        await build_template(url, args.rows)
        await migrate_with_alembic(url)
    print(f"{args.rows:,} rows in {T}")
    print(
        f"{'operation':<30} {'how':<6} {'hold':>5}  {'wall':>8}  {'longest stall':>14}"
        f"  {'lock wait':>10}  {'disk flush':>10}  longest stall waited on"
    )
    try:
        for name, _, _, undo_statements in CASES:
            for hold in (0.0, args.hold):
                for how in ("plain", "safe"):
                    prepared = await Prepared.start(url, name, how)
                    result = await measure_action(url, prepared.go, hold, probe)
                    print(
                        f"{name:<30} {how:<6} {hold:4.0f}s  {result.wall:7.2f}s  "
                        f"{result.stall_ms:11.1f} ms  {result.lock_wait_ms:7.0f} ms"
                        f"  {result.disk_flush_ms:>10}  {result.longest_stall_waited_on}",
                        flush=True,
                    )
                    await undo(url, undo_statements)
    finally:
        if not args.keep:
            await admin(base, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
