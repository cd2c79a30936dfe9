"""Test databases: template build, set-up when nothing changed, clone time, suite wall time.

    python -m benchmarks.test_database [--clones 30] [--suite]

Runs on the embedded server (or TEST_DATABASE_URL's), in databases of its own named
`<base>_bench_*`, dropped afterwards. `--suite` also times the whole test suite serial and
with `-n 2` (several minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy.engine import URL

from app.db.embedded import DATABASE_NAMES
from app.db.embedded.test_server import server_url_for_tests, suite_id
from app.db.engine import connect
from app.db.settings import Environment, Settings
from app.db.urls import parse_database_url
from app.models import Base
from app.testing.databases import ClonePool, clone, drop, ensure_template

ROOT = Path(__file__).resolve().parents[1]


def admin_and_base(settings: Settings) -> tuple[URL, str]:
    if settings.test_database_url is not None:
        url = parse_database_url(settings.test_database_url.get_secret_value())
        return url.set(database="postgres"), str(url.database)
    base = f"{DATABASE_NAMES[Environment.TEST]}_{suite_id(ROOT)}_bench"
    return server_url_for_tests(settings, ROOT), base


async def timed_clones(admin: URL, template: str, base: str, count: int, how: str) -> list[float]:
    """Milliseconds per CREATE DATABASE ... TEMPLATE with one way of copying."""
    conn = await connect(admin)
    times = []
    try:
        if how == "clone":
            await conn.execute("SET file_copy_method = clone")
        strategy = {"wal_log": "WAL_LOG", "file_copy": "FILE_COPY", "clone": "FILE_COPY"}[how]
        for n in range(count):
            name = f"{base}_bench_{how}_{n}"
            started = time.perf_counter()
            await conn.execute(
                f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY {strategy}'
            )
            times.append((time.perf_counter() - started) * 1000)
            await conn.execute(f'DROP DATABASE "{name}"')
    finally:
        await conn.close()
    return times


def suite(*args: str) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    last = (result.stdout.strip().splitlines() or ["?"])[-1]
    print(f"  pytest {' '.join(args) or '(serial)'}: {elapsed:.1f} s  [{last}]")
    if result.returncode != 0:
        failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
        raise SystemExit("the suite failed:\n" + "\n".join(failed))
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clones", type=int, default=30)
    parser.add_argument("--suite", action="store_true")
    args = parser.parse_args()
    settings = Settings(_env_file=None)
    admin, base = admin_and_base(settings)
    bench = f"{base}_bench"

    started = time.perf_counter()
    template = await ensure_template(admin, bench, Base.metadata)
    cold = time.perf_counter() - started
    assert template.built
    print(f"template build (cold, init_db into a new database): {cold * 1000:.0f} ms")

    warm = []
    for _ in range(5):
        started = time.perf_counter()
        again = await ensure_template(admin, bench, Base.metadata)
        await clone(admin, again.name, f"{bench}_worker")
        warm.append(time.perf_counter() - started)
        assert not again.built
    await drop(admin, f"{bench}_worker")
    print(
        "set-up with an unchanged fingerprint (no rebuild; check + one worker clone): "
        f"median {statistics.median(warm) * 1000:.0f} ms"
    )

    conn = await connect(admin)
    version = int(await conn.fetchval("SHOW server_version_num"))
    await conn.close()
    ways = ["wal_log", "file_copy"] if version >= 150000 else []
    if version >= 180000:
        ways.append("clone")
    for how in ways:
        try:
            times = await timed_clones(admin, template.name, bench, args.clones, how)
        except Exception as exc:  # clone needs a filesystem with reflinks
            print(f"clone, {how}: not available here ({str(exc).splitlines()[0]})")
            continue
        print(
            f"clone, {how}: median {statistics.median(times):.1f} ms, "
            f"p90 {sorted(times)[int(len(times) * 0.9)]:.1f} ms ({len(times)} clones)"
        )

    pool = ClonePool(admin, template.name, f"{bench}_pool")
    handed = []
    for _ in range(args.clones):
        started = time.perf_counter()
        url = await pool.take()
        handed.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.3)  # the test using it
        await drop(admin, str(url.database))
    await pool.close()
    print(
        "database_of_its_own (pool, one made ahead; a 0.3 s test between): "
        f"first {handed[0]:.1f} ms, then median {statistics.median(handed[1:]):.1f} ms"
    )

    conn = await connect(admin)
    await conn.execute(f'ALTER DATABASE "{template.name}" IS_TEMPLATE false')
    await conn.execute(f'DROP DATABASE "{template.name}"')
    await conn.close()

    if args.suite:
        env_note = "TEST_DATABASE_URL" if settings.test_database_url else "embedded"
        print(f"whole suite ({env_note}, {os.cpu_count()} cores):")
        serial = suite()
        parallel = suite("-n", "2")
        print(f"  -n 2 / serial: {parallel / serial:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
